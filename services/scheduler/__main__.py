from services.scheduler.server import SERVICE
from shared.server import main

main(SERVICE)
