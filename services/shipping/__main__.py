from services.shipping.server import SERVICE
from shared.server import main

main(SERVICE)
