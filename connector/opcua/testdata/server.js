// A node-opcua server with a known address space, for interop tests.
//
// usage: node server.js PORT PKI_DIR [BENCH_NODES [MAX_NODES_PER_READ]]
//
// Environment: NODE_PATH points at the node-opcua install.
// Address space (namespace 1, all under Objects/Demo, browse names as the
// ids after "Demo."):
//   ns=1;s=Demo.<Type>  one variable per built-in scalar type, writable:
//                       Boolean true, SByte -8, Byte 200, Int16 -1600,
//                       UInt16 60000, Int32 -320000, UInt32 4000000000,
//                       Int64 -6400000000, UInt64 18000000000000000000,
//                       Float 1.5, Double 2.25, String "hello",
//                       DateTime 2024-01-02T03:04:05.678Z,
//                       ByteString 0x00 0x01 0xfe 0xff
//   ns=1;s=Demo.Counter   Int32, +1 every 100 ms
//   ns=1;s=Demo.Writable  Double, writable
//   ns=1;s=Demo.ReadOnly  Double 7, not writable (BadNotWritable)
//   ns=1;s=Demo.Guarded   Double 9, writable but not by any user
//                         (BadUserAccessDenied)
//   ns=1;s=Demo.Array     Int32[] {1, 2, 3}
//   ns=1;s=Bench.N<i>     BENCH_NODES Int32 variables, i = 0.., each
//                         changing every second
// Users: "user" / "secret". Security: None, and Basic256Sha256 with Sign
// and SignAndEncrypt; client certificates must be in PKI_DIR/trusted/certs.
// Prints "ready" on stdout once it listens.
const {
  OPCUAServer, Variant, DataType, OPCUACertificateManager, MessageSecurityMode,
  SecurityPolicy, VariantArrayType,
} = require("node-opcua");

async function main() {
  const port = parseInt(process.argv[2], 10);
  const pki = process.argv[3];
  const benchNodes = parseInt(process.argv[4] || "0", 10);
  const maxPerRead = parseInt(process.argv[5] || "500", 10);
  const certs = new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: false });
  await certs.initialize();
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    serverCertificateManager: certs,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: { isValidUser: (u, p) => u === "user" && p === "secret" },
    serverCapabilities: { maxSessions: 50, operationLimits: { maxNodesPerRead: maxPerRead, maxNodesPerWrite: maxPerRead } },
  });
  await server.initialize();
  const as = server.engine.addressSpace;
  const ns = as.getOwnNamespace();
  const demo = ns.addFolder(as.rootFolder.objects, { browseName: "Demo", nodeId: "s=Demo" });
  const rw = "CurrentRead | CurrentWrite";
  const scalars = [
    ["Boolean", DataType.Boolean, true], ["SByte", DataType.SByte, -8], ["Byte", DataType.Byte, 200],
    ["Int16", DataType.Int16, -1600], ["UInt16", DataType.UInt16, 60000], ["Int32", DataType.Int32, -320000],
    ["UInt32", DataType.UInt32, 4000000000], ["Int64", DataType.Int64, [0xfffffffe, 0x8287c000]],
    ["UInt64", DataType.UInt64, [0xf9ccd8a1, 0xc5080000]], ["Float", DataType.Float, 1.5],
    ["Double", DataType.Double, 2.25], ["String", DataType.String, "hello"],
    ["DateTime", DataType.DateTime, new Date("2024-01-02T03:04:05.678Z")],
    ["ByteString", DataType.ByteString, Buffer.from([0, 1, 0xfe, 0xff])],
  ];
  for (const [name, dt, value] of scalars) {
    const v = ns.addVariable({ componentOf: demo, browseName: name, nodeId: "s=Demo." + name,
      dataType: DataType[dt], accessLevel: rw, userAccessLevel: rw });
    v.setValueFromSource(new Variant({ dataType: dt, arrayType: VariantArrayType.Scalar, value }));
  }
  let counter = 0;
  const cv = ns.addVariable({ componentOf: demo, browseName: "Counter", nodeId: "s=Demo.Counter", dataType: "Int32" });
  cv.setValueFromSource(new Variant({ dataType: DataType.Int32, value: 0 }));
  const timers = [setInterval(() => { counter++; cv.setValueFromSource(new Variant({ dataType: DataType.Int32, value: counter })); }, 100)];
  const w = ns.addVariable({ componentOf: demo, browseName: "Writable", nodeId: "s=Demo.Writable", dataType: "Double", accessLevel: rw, userAccessLevel: rw });
  w.setValueFromSource(new Variant({ dataType: DataType.Double, value: 0 }));
  const ro = ns.addVariable({ componentOf: demo, browseName: "ReadOnly", nodeId: "s=Demo.ReadOnly", dataType: "Double", accessLevel: "CurrentRead", userAccessLevel: "CurrentRead" });
  ro.setValueFromSource(new Variant({ dataType: DataType.Double, value: 7 }));
  const g = ns.addVariable({ componentOf: demo, browseName: "Guarded", nodeId: "s=Demo.Guarded", dataType: "Double", accessLevel: rw, userAccessLevel: "CurrentRead" });
  g.setValueFromSource(new Variant({ dataType: DataType.Double, value: 9 }));
  const arr = ns.addVariable({ componentOf: demo, browseName: "Array", nodeId: "s=Demo.Array", dataType: "Int32", valueRank: 1, arrayDimensions: [3] });
  arr.setValueFromSource(new Variant({ dataType: DataType.Int32, arrayType: VariantArrayType.Array, value: new Int32Array([1, 2, 3]) }));
  if (benchNodes > 0) {
    const bench = ns.addFolder(as.rootFolder.objects, { browseName: "Bench", nodeId: "s=Bench" });
    const vars = [];
    for (let i = 0; i < benchNodes; i++) {
      const b = ns.addVariable({ componentOf: bench, browseName: "N" + i, nodeId: "s=Bench.N" + i, dataType: "Int32" });
      b.setValueFromSource(new Variant({ dataType: DataType.Int32, value: 0 }));
      vars.push(b);
    }
    let tick = 0;
    timers.push(setInterval(() => {
      tick++;
      for (let i = 0; i < vars.length; i++) vars[i].setValueFromSource(new Variant({ dataType: DataType.Int32, value: tick * 100000 + i }));
    }, 1000));
  }
  await server.start();
  process.stdout.write("ready\n");
  const stop = async () => { timers.forEach(clearInterval); await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
