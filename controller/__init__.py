"""The engine: loader, plan, engine, agent, inventory, status, CLI. No kind-specific code."""
