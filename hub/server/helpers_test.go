package server_test

import (
	"context"
	"encoding/pem"

	"google.golang.org/grpc/metadata"
)

func grpcMetadata(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
