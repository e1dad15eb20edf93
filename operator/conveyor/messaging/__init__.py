"""Pure pieces of messaging: settings, topology arguments, body codecs, confirm bookkeeping.

Nothing here imports pika or does I/O; `conveyor.broker` is the adapter that puts these on the
wire. Keeping them apart lets their tests run without a broker.
"""
