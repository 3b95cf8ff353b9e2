from services.catalog.server import SERVICE
from shared.server import main

main(SERVICE)
