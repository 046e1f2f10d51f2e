"""Trading: broker protocol, paper and ccxt brokers, crash-safe state, the runner (`raytrade trade`)."""
