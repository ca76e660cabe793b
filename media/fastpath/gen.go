package fastpath

// The generated objects are committed: a plain go build needs no clang.
//go:generate go tool bpf2go -tags linux -target bpfel -type fp_key -type fp_val fp bpf/fastpath.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
