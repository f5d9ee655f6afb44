// Package confpath reports a configuration problem at a field nested
// inside a component's YAML block, with the field's full YAML path and its
// line and column, where gateway.Section.Errorf alone finds only the keys
// of the block itself:
//
//	return confpath.Errorf(spec, confpath.Path{"devices", 1, "ranges", 0, "table"}, "unknown table %q", name)
//	// connectors[0].modbus.devices[1].ranges[0].table: unknown table "x" (gw.yaml:14:22)
//
// It walks the block by decoding it into maps and lists of sections, once
// per error, so it costs nothing on the happy path. A path that leads
// nowhere (a key or entry that is absent) is still written in full, at the
// position of the deepest part found.
package confpath
