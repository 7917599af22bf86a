package osquerytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxControlBody bounds POST /exec bodies.
const maxControlBody = 1 << 20

// ControlHandler serves the fixture control API used by fakeosqueryd:
//
//	GET  /healthz        -> 200 "ok"
//	POST /exec           body = SQL, run with Exec (writes allowed) -> 204
//	POST /query          body = SQL, run like a Thrift query -> 200 JSON rows
//	POST /delay?d=2s     set the answer delay for query/getQueryColumns -> 204
//	POST /hang?on=true   stop answering every Thrift call (ping too); ?on=false resumes -> 204
//	POST /break?policy=ID apply the shipped policy's flip (see Flips) -> 204
//	POST /reset          restore the healthy fixture host -> 204
//	POST /deregister?name=N drop extension N silently (it is not told) -> 204
//
// Errors are 400 with the message as plain text.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /exec", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if err := s.Exec(r.Context(), body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.log.Info("fixture changed", "sql", body)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		rows, err := s.Query(r.Context(), body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rows)
	})
	mux.HandleFunc("POST /delay", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 {
			http.Error(w, "delay: want ?d=<duration>, e.g. ?d=2s or ?d=0s", http.StatusBadRequest)
			return
		}
		s.SetDelay(d)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /hang", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("on") {
		case "true", "1":
			s.SetHang(true)
		case "false", "0":
			s.SetHang(false)
		default:
			http.Error(w, "hang: want ?on=true or ?on=false", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /break", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("policy")
		if err := s.Break(r.Context(), id); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.log.Info("fixture broken", "policy", id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Reset(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.log.Info("fixtures reset")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /deregister", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "deregister: want ?name=<extension name>", http.StatusBadRequest)
			return
		}
		if err := s.Deregister(r.Context(), name); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.log.Info("extension dropped silently", "name", name)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func readBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	if len(b) == 0 {
		http.Error(w, "empty body: send the SQL as the request body", http.StatusBadRequest)
		return "", false
	}
	return string(b), true
}
