package shaping

// The generated objects are committed so users need no clang; scripts/ci/shaping.sh
// checks that they match these sources.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../bpf/include" -target bpfel,bpfeb shaper ../bpf/shaper.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -I../bpf/include -DSHAPING_PERF" -target bpfel,bpfeb shaperPerf ../bpf/shaper.c
