// Package cuda is the NVIDIA GPU kernels.Backend, built only with the
// `cuda` build tag (go build -tags cuda); without it the package is empty
// and the project stays pure Go.
//
// Device, context, stream, memory and module handling go through
// gorgonia.org/cu (the CUDA driver API, libcuda.so.1). Our own kernels live
// in kernels.cu, compiled to PTX for compute_80 by tools/cuda/build-ptx.sh
// and embedded from ptx/, so building never needs nvcc. GEMMs go through
// cuBLAS, opened at run time with dlopen (libcublas.so.13, .12 or .11, or
// $PANCAP_CUBLAS), so one binary serves CUDA 11, 12 and 13 installations;
// a reference GEMM kernel (GEMMReference) needs no cuBLAS at all.
//
// gorgonia.org/cu calls cuInit in its package initialiser and exits the
// process when it fails: a cuda build starts only on a machine with a
// working NVIDIA driver.
package cuda
