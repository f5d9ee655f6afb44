"""A pymodbus TCP server with a known register image, for interop tests.

usage: pymodbus_server.py PORT

Image (300 addresses per table, zero-based):
  holding register i = 1000 + i
  input register i   = 2000 + i
  coil i             = 1 if i % 3 == 0 else 0
  discrete input i   = 1 if i % 2 == 1 else 0
Reads past address 299 answer exception 2 (illegal data address).
"""
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartAsyncTcpServer

N = 300


async def main(port):
    store = ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, [1000 + i for i in range(N)]),
        ir=ModbusSequentialDataBlock(0, [2000 + i for i in range(N)]),
        co=ModbusSequentialDataBlock(0, [1 if i % 3 == 0 else 0 for i in range(N)]),
        di=ModbusSequentialDataBlock(0, [1 if i % 2 == 1 else 0 for i in range(N)]),
        zero_mode=True,
    )
    ctx = ModbusServerContext(slaves=store, single=True)
    server = await StartAsyncTcpServer(context=ctx, address=("127.0.0.1", port), defer_start=True)
    await server.serve_forever()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main(int(sys.argv[1])))
