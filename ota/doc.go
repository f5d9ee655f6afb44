// Package ota installs signed updates of a gateway's configuration, rules,
// policies and codec sources, watches each one on probation and rolls it
// back by itself when the gateway's health degrades.
//
// The happy path, with gateway g running its base configuration base:
//
//	u, err := ota.New("/var/lib/gateway/ota", trust, &ota.GatewayApplier{Gateway: g, Base: base},
//		ota.WithHealth(ota.NewCounters(g)))
//	cur, err := u.Current()        // run this generation (nil: base)
//	err = u.Update(ctx, bundle)   // verify, stage, apply, probation, commit or roll back
//	err = u.Run(ctx, time.Minute, &ota.DirSource{Dir: "/media/usb"}) // or poll sources
//
// # Bundle format
//
// A bundle is a tar archive (ustar or pax, regular files only) whose first
// entry is manifest.note, followed by every file the manifest lists, in any
// order, each at its manifest path and nothing else. manifest.note is a
// signed note (golang.org/x/mod/sumdb/note, Ed25519): the manifest text,
// a blank line, and one signature line per key ("— name base64"). The
// manifest text is line based, one "key value" per line, single spaces:
//
//	iotgw-ota-bundle v1
//	name line-3-config
//	version 42
//	created 2026-12-03T19:00:00Z
//	expires 2027-01-03T19:00:00Z
//	target name line-3-*
//	target label site=plant-a
//	rollback
//	trust alice+1a2b3c4d+AbC...
//	threshold 2
//	file <sha256 hex> <size> gateway.yaml
//	file <sha256 hex> <size> rules/limits.rego
//
// name, version (a positive integer), created and expires (RFC 3339) are
// required; the rest is optional. target lines select gateways (any
// "target name" glob must match the gateway's name, every "target label"
// must equal its label; none: every gateway). rollback marks an
// explicitly signed rollback bundle, the only way to install a version
// not above the running one. trust and threshold rotate the keys: once a
// bundle carrying them is accepted (signed by the current threshold) they
// replace the trusted keys. File paths are relative, slash separated, in
// clean form and stay inside the bundle root. Signatures by keys the
// gateway does not trust do not count (a bundle that needs them to reach
// the threshold is refused with ErrUnknownKey). The archive may exceed the
// sum of its files by 128 KiB (manifest, headers, padding). The signing
// tool (examples/otasign) writes and checks bundles.
//
// # What is rejected
//
// Update refuses a bundle with an error wrapping one sentinel (ErrThreshold,
// ErrUnknownKey, ErrBadSignature, ErrDowngrade, ErrExpired, ErrNotForMe,
// ErrHashMismatch, ErrSizeMismatch, ErrPath, ErrTooLarge, ErrMalformed,
// ErrInvalidConfig, ErrHook), counts it in Stats.Rejected by Reason and
// logs it. Nothing changes on disk: the signed manifest is checked before
// anything is written, the files are written to gen-N.partial and removed
// on any error, and the Downloading, Verifying and rejected-Failed states
// are kept in memory only.
//
// # Generations and crash safety
//
// The state directory holds gen-N/ directories (the files and the signed
// manifest), the pointer files current and good (the running and the last
// known-good generation; absent or empty: the host's base configuration),
// and state, the persisted machine (Status as JSON). Every pointer and
// state write is atomic: write a temporary file, fsync, rename, fsync the
// directory. A generation is staged in gen-N.partial and renamed into place
// once whole and fsynced. New recovers whatever a crash left (see Next with
// EvRestart): half-written generations are removed, an interrupted apply is
// finished and put on probation, a probation or rollback interrupted by a
// crash rolls back to the last known-good. So the host, which runs Current
// after New, always runs one whole generation.
//
// # Probation
//
// After an apply the new generation runs on probation (WithProbation,
// default 30 s, checked every 500 ms). Health checks (WithHealth; Counters
// is the default over the gateway's Stats and Ready, with a fixed error
// ratio), Prober hooks and Degrade (an SLO engine's alert callback) can
// declare it degraded; it is then rolled back to the last known-good at
// once. A gateway in edge mode keeps every acknowledged message in its
// Store across the switch. Passing probation commits it as the new last
// known-good.
//
// # Delivery
//
// Run polls Sources: DirSource (a directory of *.otb files, for
// air-gapped installs), HTTPSource (If-None-Match with the last ETag,
// Range with If-Range to resume, a size limit) and MQTTChannel (retained
// desired documents per gateway and per fleet group, naming a version and
// a URL or carrying a small bundle inline; a retained reported document
// after every transition). MQTTChannel keeps its own client session to
// the broker: the upstream connection is configured by the very bundles
// it would carry, and a bundle that breaks it must not cut the channel
// that reports the rollback. Package ota/rollout is the fleet side.
//
// # Limits
//
// A shutdown or crash during probation rolls the update back at the next
// start: the new generation did not prove itself. An HTTP server that
// sends no ETag makes every poll download the bundle again (and refuse it
// as a downgrade once installed). One update runs at a time (ErrBusy). A key rotation takes effect once
// its bundle is staged, even if that bundle is later rolled back. The
// Base configuration's own sections that apply only at restart (gateway:,
// health:, store:) follow Gateway.ApplyConfig's rules. OS images and
// binaries are the host's business (see the hooks and examples/ota-ab).
package ota
