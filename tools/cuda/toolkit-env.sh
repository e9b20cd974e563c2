# toolkit-env.sh — sourced by the scripts that build the `cuda` tag
# (gpu-test-binary.sh, gpu-bundle.sh) from the repository root: fetches
# tools/cuda-toolkit when missing and exports the cgo flags that point at
# its headers and link-time libcuda.
tools/cuda/fetch-toolkit.sh
tk=${CUDA_TOOLKIT_DIR:-$PWD/tools/cuda-toolkit}/usr
export CGO_ENABLED=1
export CGO_CFLAGS="-I$tk/include ${CGO_CFLAGS:-}"
export CGO_LDFLAGS="-L$tk/lib/x86_64-linux-gnu/stubs ${CGO_LDFLAGS:-}"
