"""What every Trellis service needs: bus, consumers, KV resources, settings, logs, metrics, health."""
