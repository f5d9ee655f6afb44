package impair

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -I../../bpf/include" -target bpfel,bpfeb fault ../../bpf/fault.c
