"""The shared core: configuration (parsed once, typed), logging and redaction, the runtime, the clock and
the Redis URL helper. Below ``webhooks`` and ``worker``, above ``models`` and ``providers``."""
