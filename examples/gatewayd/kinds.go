package main

import "github.com/iotgw/gateway"

// extraKinds are registrations that files of this command add from their
// init functions, so an optional part (and its imports) lives in a file of
// its own that a build tag can leave out.
var extraKinds []func(*gateway.Registry) error
