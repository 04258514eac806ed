// sealcheck: an independent check of diskhist's checkpoints and proof
// bundles with Go's golang.org/x/mod/sumdb/note (signed notes) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 proofs). Built offline by
// tests/seal_go_interop.rs against Debian's golang-golang-x-mod-dev.
//
//	sealcheck VERIFIER-KEY CHECKPOINT [BUNDLE]
//
// Exit 0: the checkpoint's signature verifies and every inclusion and
// consistency proof in the bundle checks; 1 otherwise, saying why.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The bundle's base64 is canonical: padded, no stray bits (diskhist's
// reader refuses anything else, so this one does too).
var b64 = base64.StdEncoding.Strict()

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "sealcheck: "+format+"\n", a...)
	os.Exit(1)
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// open verifies the signed note and parses its text as a C2SP checkpoint.
func open(msg []byte, v note.Verifier) checkpoint {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint text has fewer than 3 lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("bad tree size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		fail("bad root hash %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return checkpoint{lines[0], size, root}
}

func hashes(fields []string) []tlog.Hash {
	var out []tlog.Hash
	for _, f := range fields {
		raw, err := b64.DecodeString(f)
		if err != nil || len(raw) != tlog.HashSize {
			fail("bad hash %q", f)
		}
		var h tlog.Hash
		copy(h[:], raw)
		out = append(out, h)
	}
	return out
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fail("usage: sealcheck VERIFIER-KEY CHECKPOINT [BUNDLE]")
	}
	vkey, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	c := open(msg, v)
	fmt.Printf("checkpoint %s size %d root %s\n", c.origin, c.size, c.root)
	if len(os.Args) == 3 {
		return
	}
	b, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail("%v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	var leaf []byte
	var seq int64
	records, ended := 0, false
	for sc.Scan() {
		f := strings.Split(sc.Text(), " ")
		switch f[0] {
		case "diskhist-proof-bundle":
			if sc.Text() != "diskhist-proof-bundle v1" {
				fail("not a version 1 bundle")
			}
		case "sample", "content":
		case "origin":
			if f[1] != c.origin {
				fail("bundle origin %q, checkpoint origin %q", f[1], c.origin)
			}
		case "size":
			if f[1] != strconv.FormatInt(c.size, 10) {
				fail("bundle size %s, checkpoint size %d", f[1], c.size)
			}
		case "root":
			if f[1] != b64.EncodeToString(c.root[:]) {
				fail("bundle root is not the checkpoint's")
			}
		case "old":
			raw, err := b64.DecodeString(f[1])
			if err != nil {
				fail("bad old checkpoint")
			}
			old := open(raw, v)
			sc.Scan()
			g := strings.Split(sc.Text(), " ")
			if g[0] != "consistency" {
				fail("want a consistency line after old")
			}
			if err := tlog.CheckTree(hashes(g[1:]), c.size, c.root, old.size, old.root); err != nil {
				fail("tlog.CheckTree %d -> %d: %v", old.size, c.size, err)
			}
			fmt.Printf("consistent with %d\n", old.size)
		case "record":
			seq, err = strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				fail("bad record number")
			}
			leaf, err = b64.DecodeString(f[2])
			if err != nil {
				fail("bad leaf data")
			}
		case "inclusion":
			if leaf == nil {
				fail("inclusion without a record")
			}
			if err := tlog.CheckRecord(hashes(f[1:]), c.size, c.root, seq-1, tlog.RecordHash(leaf)); err != nil {
				fail("tlog.CheckRecord %d: %v", seq, err)
			}
			leaf = nil
			records++
		case "end":
			ended = true
		default:
			fail("unexpected bundle line %q", f[0])
		}
	}
	if !ended {
		fail("bundle cut short")
	}
	fmt.Printf("ok %d records\n", records)
}
