"""A pymodbus TCP server with a known register image, for interop tests.

usage: pymodbus_server.py PORT [SIZE]

Image (SIZE addresses per table, default 300, zero-based):
  holding register i = 1000 + i
  input register i   = 2000 + i
  coil i             = 1 if i % 3 == 0 else 0
  discrete input i   = 1 if i % 2 == 1 else 0
Reads past the image answer exception 2 (illegal data address).
Values are taken modulo 65536.
"""
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartAsyncTcpServer

async def main(port, n):
    store = ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, [(1000 + i) % 65536 for i in range(n)]),
        ir=ModbusSequentialDataBlock(0, [(2000 + i) % 65536 for i in range(n)]),
        co=ModbusSequentialDataBlock(0, [1 if i % 3 == 0 else 0 for i in range(n)]),
        di=ModbusSequentialDataBlock(0, [1 if i % 2 == 1 else 0 for i in range(n)]),
        zero_mode=True,
    )
    ctx = ModbusServerContext(slaves=store, single=True)
    server = await StartAsyncTcpServer(context=ctx, address=("127.0.0.1", port), defer_start=True)
    await server.serve_forever()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 300))
