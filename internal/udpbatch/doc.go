// Package udpbatch reads and writes UDP datagrams in batches without an
// allocation per datagram: recvmmsg and sendmmsg through
// golang.org/x/sys/unix on Linux, one datagram per system call elsewhere
// (and on a Linux kernel without them, and when the batch size is 1).
//
// A Reader owns n preallocated slots (buffer, source address, length); Read
// fills as many as the socket has ready, waiting through the runtime's
// poller like net.UDPConn when there is none. A Writer queues datagrams
// (copied into its own slot buffers) and Flush sends them with as few
// calls as the kernel allows. Neither is safe for concurrent use: give each
// reading goroutine its own.
//
// Source addresses are netip.AddrPort values decoded from the kernel's
// sockaddr in place; an IPv6 link-local source carries its interface index
// as a numeric zone, which net.UDPConn accepts when writing back.
//
// A datagram larger than its slot is cut to the slot (as with
// net.UDPConn) and reported with Message.Truncated on the batched path.
package udpbatch
