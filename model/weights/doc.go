// Package weights reads named tensors from checkpoint files: safetensors
// (single or sharded with model.safetensors.index.json) and PyTorch .bin zip
// archives (single or sharded with pytorch_model.bin.index.json), from a
// directory on disk or from an fs.FS.
//
// Safetensors files and the STORED (uncompressed) storages of .bin archives
// are memory-mapped read-only and never copied: a Tensor's Data is then a
// slice of the mapping, valid until the Store is closed, and must not be
// written. Compressed .bin entries (which PyTorch never writes) and files read
// through an fs.FS are held in ordinary memory instead.
//
// Every file is validated before a byte of it is trusted: header lengths,
// dtypes, shapes and offsets of safetensors; zip entry sizes against declared
// sizes and limits (zip bombs); and the pickle of a .bin is unpickled with an
// allow-list of the tensor-rebuild globals only, so a hostile checkpoint can
// never run code. Errors wrap the sentinel errors of this package and name
// the file and the tensor.
//
// The package also merges PEFT LoRA adapters into a Store (MergeLoRA) and
// writes safetensors files (WriteSafetensors, WriteSafetensorsStream).
package weights
