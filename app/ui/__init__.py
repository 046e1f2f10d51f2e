"""See what the agent does: the web dashboard (`raytrade dashboard`) and the backtrading game (`raytrade play`)."""
