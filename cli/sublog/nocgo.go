//go:build !cgo

package main

// sublog needs cgo: its intent documents use Automerge's C library and its
// store's compression uses zstd's C code, so a build without cgo (or without
// a C compiler) cannot work. Rather than the errors deep inside those
// packages, such a build stops at this import, whose path is the message.
import _ "sublog_requires_cgo/build_with_CGO_ENABLED_1_and_a_C_compiler_such_as_gcc"
