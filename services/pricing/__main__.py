from services.pricing.server import SERVICE
from shared.server import main

main(SERVICE)
