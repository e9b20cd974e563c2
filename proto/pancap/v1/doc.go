// Package pancapv1 is the Pancap Serve gRPC API (pancap.v1), generated from
// pancap.proto by protoc-gen-go and protoc-gen-go-grpc. Regenerate it with
// `make proto`; do not edit the .pb.go files by hand.
package pancapv1
