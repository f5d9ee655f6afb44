"""A pymodbus TCP server with a known register image, for interop tests.

usage: pymodbus_server.py PORT [SIZE [CLOSE_EVERY]]

Image (SIZE addresses per table, default 300, zero-based):
  holding register i = 1000 + i
  input register i   = 2000 + i
  coil i             = 1 if i % 3 == 0 else 0
  discrete input i   = 1 if i % 2 == 1 else 0
Reads past the image answer exception 2 (illegal data address).
Values are taken modulo 65536.
With CLOSE_EVERY > 0 the server closes the client's connection instead of
answering every CLOSE_EVERY-th request (counted over all connections): a
flaky device.
"""
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartAsyncTcpServer
from pymodbus.server.async_io import ModbusConnectedRequestHandler


def flaky_handler(every):
    """A request handler that drops the connection on every every-th request."""
    count = [0]

    class Flaky(ModbusConnectedRequestHandler):
        def execute(self, request, *addr):
            count[0] += 1
            if count[0] % every == 0:
                self.transport.close()
                return
            super().execute(request, *addr)

    return Flaky


async def main(port, n, close_every):
    store = ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, [(1000 + i) % 65536 for i in range(n)]),
        ir=ModbusSequentialDataBlock(0, [(2000 + i) % 65536 for i in range(n)]),
        co=ModbusSequentialDataBlock(0, [1 if i % 3 == 0 else 0 for i in range(n)]),
        di=ModbusSequentialDataBlock(0, [1 if i % 2 == 1 else 0 for i in range(n)]),
        zero_mode=True,
    )
    ctx = ModbusServerContext(slaves=store, single=True)
    kwargs = {}
    if close_every > 0:
        kwargs["handler"] = flaky_handler(close_every)
    server = await StartAsyncTcpServer(context=ctx, address=("127.0.0.1", port), defer_start=True, **kwargs)
    await server.serve_forever()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 300,
                     int(sys.argv[3]) if len(sys.argv) > 3 else 0))
