//go:build gw_nosqlite

package main

func init() {
	addPart(partSQLite, nil)
}
