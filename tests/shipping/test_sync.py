from tests.shipping.conftest import StartShipping


async def test_smoke(start_shipping: StartShipping) -> None:
    async with start_shipping() as s:
        await s.add_account(1)
        report = await s.sync("all")
        print(report)
        report = await s.sync("all", dry_run=True)
        print(report)
