"""`python -m config_service` runs the service, as the `config-service` console script does."""

from config_service.cli import main

main()
