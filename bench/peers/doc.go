// Command peers runs the same MQTT job through gatewayd and through other
// programs that do it, side by side, between two mosquitto brokers on
// loopback, and prints their figures as a markdown table.
//
//	go run ./bench/peers -n 100000 -devices 16,1000 -rounds 2
//	go run ./bench/peers -n 5000 -devices 4 -rounds 1 -peers ceiling,gw-listener   # a smoke run
//
// # The job
//
// D devices publish N JSON readings ({"id":123,"dev":"d7","v":12.3}) at
// QoS 1 to "devices/<device>/env", each with at most -window messages in
// flight (default 20, as mosquitto_pub). A consumer subscribed to "#" on
// broker B at QoS 1 counts the ids that arrive and reports ids lost and
// duplicate deliveries. The devices and the consumer are this process:
// a minimal MQTT 3.1.1 client that reads through a 1 MiB buffer and
// coalesces its writes (PUBLISHes up to the window, PUBACKs until the read
// buffer is empty), so that it is not the bottleneck it measures.
//
// Peers (-peers, in the order of round 1):
//
//   - ceiling: the devices publish straight to broker B. No forwarder: the
//     throughput of the harness itself on this machine.
//   - gw-listener: gatewayd's MQTT listener; the devices connect to
//     gatewayd, whose mqtt sink publishes to broker B.
//   - gw-client: gatewayd's MQTT client connector subscribed to broker A
//     (where the devices publish), mqtt sink to broker B.
//   - gw-edge: gw-client in edge mode, with the SQLite store at
//     synchronous=FULL: every reading is durable before broker A gets its
//     PUBACK.
//   - nodered: Node-RED, mqtt in (broker A, QoS 1) → function (return
//     msg) → mqtt out (broker B, QoS 1), headless: no editor, no admin API,
//     no HTTP nodes.
//
// gatewayd is built from ./examples/gatewayd into the run's temporary
// directory. Node-RED (-nodered-version, default 4.1.15) is installed with
// npm into -cache (default ~/.cache/iotgw-peers) on first use and reused
// after that; it needs node, npm and the npm registry once. Telegraf is not
// included.
//
// Every run starts fresh brokers (mosquitto's defaults except a loopback
// listener, anonymous access, no persistence and no cap on queued
// messages, so that a slow consumer loses nothing) and a fresh forwarder,
// each with a generated configuration in the temporary directory (-keep
// keeps it with every process's log). Before the devices start, the
// harness sends probe messages into the path until one comes out of broker
// B, so the forwarder is connected and subscribed end to end. Then one
// device sends -warmup messages (default 2,000, not counted) and the
// harness waits for all of them, so that the measured run finds the
// forwarder warm: a JIT compiler's hot paths, a Go heap at its working
// size.
//
// # Figures
//
// Per peer and round:
//
//   - msg/s: distinct ids received between the 10 % and the 90 % marks,
//     over the time between them;
//   - CPU µs/msg over the same window (utime+stime from /proc/<pid>/stat,
//     read at both marks) of the forwarder, of broker A (the broker the
//     path needs in front of it) and their sum; broker B's and the
//     harness's own (devices and consumer) for reference.
//     The kernel counts CPU time in ticks of 10 ms, so at N messages the
//     resolution is 10 ms / (0.8 N): 0.125 µs/msg at 100,000, 2.5 µs/msg
//     at 5,000;
//   - CPU µs/msg over the whole run, forwarder plus broker A: their CPU
//     from the devices' first message to the last one received, over the
//     ids received. A forwarder that acknowledges messages on arrival and
//     holds them in memory (Node-RED) can drain broker A well ahead of
//     what reaches broker B; much of its own and broker A's work then
//     falls before the 10 % mark, and the window alone undercounts it.
//     Compare the two columns before quoting either;
//   - peak RSS: VmHWM of the forwarder (from /proc/<pid>/status) at the
//     end of the run;
//   - received (distinct ids), lost (ids never received) and dup
//     (deliveries of an id after its first);
//   - the load average when the run ended. All processes share the
//     machine's cores, and so does anything else running: compare figures
//     within one run, where peers alternate (each round starts one peer
//     further on).
//
// # Failures
//
// A peer that does not start, or through which no probe comes within
// -probe-timeout, is reported as failed and the others still run. A run
// ends when every id arrived, when nothing new arrived for -stall, at
// -timeout, or when the forwarder exits; the row then shows what was
// delivered and why it ended. Every process the harness starts runs in its
// own process group and is stopped (SIGTERM, then SIGKILL) at the end of
// its run, on error, and on Ctrl-C or SIGTERM.
package main
