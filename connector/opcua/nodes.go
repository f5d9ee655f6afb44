package opcua

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// ErrNodeSpec is a node id or browse path that does not parse.
var ErrNodeSpec = errors.New("opcua: bad node")

// ParseNodeID parses a node id in the OPC UA text form: "i=2258",
// "ns=2;s=Demo.Temperature", "ns=3;g=<guid>", "ns=1;b=<base64>".
func ParseNodeID(s string) (*ua.NodeID, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return nil, fmt.Errorf("%w: node id %q: want e.g. i=2258 or ns=2;s=Name", ErrNodeSpec, s)
	}
	rest := s
	if strings.HasPrefix(rest, "ns=") {
		i := strings.IndexByte(rest, ';')
		if i < 0 {
			return nil, fmt.Errorf("%w: node id %q: want ns=<index>;<type>=<id>", ErrNodeSpec, s)
		}
		rest = rest[i+1:]
	}
	if len(rest) < 2 || rest[1] != '=' || strings.IndexByte("isgb", rest[0]) < 0 {
		return nil, fmt.Errorf("%w: node id %q: want i=, s=, g= or b= (with an optional ns=<index>; before)", ErrNodeSpec, s)
	}
	n, err := ua.ParseNodeID(s)
	if err != nil {
		return nil, fmt.Errorf("%w: node id %q: %v", ErrNodeSpec, s, err)
	}
	return n, nil
}

// ParseBrowsePath parses a browse path from the Objects folder:
// segments separated by "/", each a browse name with an optional
// namespace index, "2:Demo/2:Temperature" (a leading "/" is allowed, and
// "Objects/" at the start is skipped). A "\" escapes the next character,
// so "/" and ":" may appear in names ("2:a\/b"). A segment without a
// namespace index is in namespace 0.
func ParseBrowsePath(s string) ([]*ua.QualifiedName, error) {
	bad := func(why string) error { return fmt.Errorf("%w: browse path %q: %s", ErrNodeSpec, s, why) }
	rest := strings.TrimPrefix(s, "/")
	rest = strings.TrimPrefix(rest, "Objects/")
	if rest == "" {
		return nil, bad("empty")
	}
	var out []*ua.QualifiedName
	var seg strings.Builder
	ns, colon := -1, false
	flush := func() error {
		name := seg.String()
		if name == "" {
			return bad("empty segment")
		}
		q := &ua.QualifiedName{Name: name}
		if ns >= 0 {
			q.NamespaceIndex = uint16(ns)
		}
		out = append(out, q)
		seg.Reset()
		ns, colon = -1, false
		return nil
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '\\':
			if i+1 == len(rest) {
				return nil, bad("trailing \\")
			}
			i++
			seg.WriteByte(rest[i])
		case c == '/':
			if err := flush(); err != nil {
				return nil, err
			}
		case c == ':' && !colon && ns < 0:
			v, err := strconv.ParseUint(seg.String(), 10, 16)
			if err != nil {
				return nil, bad(fmt.Sprintf("namespace index %q: want 0..65535 before ':'", seg.String()))
			}
			ns, colon = int(v), true
			seg.Reset()
		default:
			seg.WriteByte(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// browsePathRequest is the TranslateBrowsePathsToNodeIds entry for path,
// from the Objects folder over hierarchical references.
func browsePath(path []*ua.QualifiedName) *ua.BrowsePath {
	els := make([]*ua.RelativePathElement, len(path))
	for i, q := range path {
		els[i] = &ua.RelativePathElement{
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
			IncludeSubtypes: true,
			TargetName:      q,
		}
	}
	return &ua.BrowsePath{StartingNode: ua.NewNumericNodeID(0, id.ObjectsFolder), RelativePath: &ua.RelativePath{Elements: els}}
}
