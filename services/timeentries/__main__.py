from services.timeentries.server import SERVICE
from shared.server import main

main(SERVICE)
