package osquerytest

import (
	"context"
	"strconv"

	"github.com/osquery/osquery-go/gen/osquery"
)

// handler implements osquery's ExtensionManager Thrift service with
// osqueryd's answers (osquery/extensions/interface.cpp).
type handler struct{ s *Server }

var _ osquery.ExtensionManager = (*handler)(nil)

func okStatus() *osquery.ExtensionStatus {
	return &osquery.ExtensionStatus{Code: int32(osquery.ExtensionCode_EXT_SUCCESS), Message: "OK"}
}

func failed(msg string) *osquery.ExtensionResponse {
	return &osquery.ExtensionResponse{
		Status:   &osquery.ExtensionStatus{Code: int32(osquery.ExtensionCode_EXT_FAILED), Message: msg},
		Response: osquery.ExtensionPluginResponse{},
	}
}

func (h *handler) Ping(ctx context.Context) (*osquery.ExtensionStatus, error) {
	h.s.hold(ctx)
	return &osquery.ExtensionStatus{Code: 0, Message: "pong"}, nil
}

// Call serves an extension's request into the core registry. Only the table
// registry is meaningful here: "columns" and "generate" on a fixture table.
func (h *handler) Call(ctx context.Context, registry, item string, request osquery.ExtensionPluginRequest) (*osquery.ExtensionResponse, error) {
	h.s.hold(ctx)
	if registry != "table" {
		return failed("Unknown registry: " + registry), nil
	}
	switch request["action"] {
	case "columns":
		cols, err := h.s.db.tableColumns(ctx, item)
		if err != nil || len(cols) == 0 {
			return failed("Unknown registry item: " + item), nil
		}
		resp := osquery.ExtensionPluginResponse{}
		for _, c := range cols {
			resp = append(resp, map[string]string{"id": "column", "name": c.name, "type": c.typ, "op": "0"})
		}
		return &osquery.ExtensionResponse{Status: okStatus(), Response: resp}, nil
	case "generate":
		if !h.s.db.hasTable(ctx, item) {
			return failed("Unknown registry item: " + item), nil
		}
		rows, qerr := h.s.db.query(ctx, "SELECT * FROM "+quoteIdent(item))
		if qerr != nil {
			return failed(qerr.Error()), nil
		}
		return &osquery.ExtensionResponse{Status: okStatus(), Response: rows}, nil
	default:
		return failed("Unknown action: " + request["action"]), nil
	}
}

func (h *handler) Shutdown(ctx context.Context) error { return nil }

func (h *handler) Extensions(ctx context.Context) (osquery.InternalExtensionList, error) {
	h.s.hold(ctx)
	return h.s.ext.list(), nil
}

func (h *handler) Options(ctx context.Context) (osquery.InternalOptionList, error) {
	h.s.hold(ctx)
	o := h.s.opts
	opt := func(v, def, typ string) *osquery.InternalOptionInfo {
		return &osquery.InternalOptionInfo{Value: v, DefaultValue: def, Type: typ}
	}
	timeout := strconv.Itoa(int(o.ExtensionTimeout.Seconds()))
	return osquery.InternalOptionList{
		"extensions_socket":   opt(o.SocketPath, "/var/osquery/osquery.em", "string"),
		"extensions_timeout":  opt(timeout, "3", "string"),
		"extensions_interval": opt("3", "3", "string"),
		"disable_extensions":  opt("false", "false", "bool"),
		"config_plugin":       opt("filesystem", "filesystem", "string"),
		"logger_plugin":       opt("filesystem", "filesystem", "string"),
		"host_identifier":     opt("uuid", "hostname", "string"),
		"nullvalue":           opt("", "", "string"),
		"utc":                 opt("true", "true", "bool"),
	}, nil
}

func (h *handler) RegisterExtension(ctx context.Context, info *osquery.InternalExtensionInfo, registry osquery.ExtensionRegistry) (*osquery.ExtensionStatus, error) {
	h.s.hold(ctx)
	return h.s.ext.register(ctx, info, registry), nil
}

func (h *handler) DeregisterExtension(ctx context.Context, uuid osquery.ExtensionRouteUUID) (*osquery.ExtensionStatus, error) {
	h.s.hold(ctx)
	return h.s.ext.deregister(ctx, uuid), nil
}

func (h *handler) Query(ctx context.Context, sql string) (*osquery.ExtensionResponse, error) {
	h.s.wait(ctx)
	rows, err := h.s.runQuery(ctx, sql)
	if err != nil {
		h.s.log.Debug("query failed", "sql", sql, "err", err)
		return failed(err.Error()), nil
	}
	h.s.log.Debug("query", "sql", sql, "rows", len(rows))
	return &osquery.ExtensionResponse{Status: okStatus(), Response: rows}, nil
}

func (h *handler) GetQueryColumns(ctx context.Context, sql string) (*osquery.ExtensionResponse, error) {
	h.s.wait(ctx)
	cols, err := h.s.db.queryColumns(ctx, sql)
	if err != nil {
		h.s.log.Debug("getQueryColumns failed", "sql", sql, "err", err)
		return failed(err.Error()), nil
	}
	resp := osquery.ExtensionPluginResponse{}
	for _, c := range cols {
		resp = append(resp, map[string]string{c.name: c.typ})
	}
	return &osquery.ExtensionResponse{Status: okStatus(), Response: resp}, nil
}
