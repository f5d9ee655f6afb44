"""A pymodbus Modbus RTU server with a known image per unit, for interop tests.

usage: pymodbus_rtu_server.py serial DEVICE BAUD UNITS
       pymodbus_rtu_server.py tcp PORT UNITS

UNITS is a comma-separated list of unit ids served; requests to other
units get no answer (like a unit that is off the bus). Image of unit u
(300 addresses per table, zero-based):
  holding register i = 1000*u + i
  input register i   = 2000 + 100*u + i
  coil i             = 1 if i % 3 == 0 else 0
  discrete input i   = 1 if i % 2 == 1 else 0
"serial" serves RTU on a serial line (a pty end), 8N1; "tcp" serves RTU
frames over TCP on 127.0.0.1:PORT.
"""
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer


def unit_store(u):
    n = 300
    return ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, [(1000 * u + i) % 65536 for i in range(n)]),
        ir=ModbusSequentialDataBlock(0, [(2000 + 100 * u + i) % 65536 for i in range(n)]),
        co=ModbusSequentialDataBlock(0, [1 if i % 3 == 0 else 0 for i in range(n)]),
        di=ModbusSequentialDataBlock(0, [1 if i % 2 == 1 else 0 for i in range(n)]),
        zero_mode=True,
    )


async def main(mode, where, baud, units):
    ctx = ModbusServerContext(slaves={u: unit_store(u) for u in units}, single=False)
    if mode == "serial":
        await StartAsyncSerialServer(context=ctx, framer=ModbusRtuFramer, port=where,
                                     baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                     ignore_missing_slaves=True)
    else:
        server = await StartAsyncTcpServer(context=ctx, framer=ModbusRtuFramer,
                                           address=("127.0.0.1", int(where)),
                                           ignore_missing_slaves=True, defer_start=True)
        await server.serve_forever()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    if sys.argv[1] == "serial":
        asyncio.run(main("serial", sys.argv[2], int(sys.argv[3]),
                         [int(u) for u in sys.argv[4].split(",")]))
    else:
        asyncio.run(main("tcp", sys.argv[2], 0, [int(u) for u in sys.argv[3].split(",")]))
