package server_test

import (
	"context"

	"google.golang.org/grpc/metadata"
)

func grpcMetadata(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
