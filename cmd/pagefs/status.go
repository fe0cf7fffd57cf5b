package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/mount"
)

// statusServer serves GET /status (JSON) and GET /metrics (Prometheus) for
// a running mount.
type statusServer struct {
	srv *http.Server
	log *slog.Logger
}

// nodeStatus is the JSON document at /status.
type nodeStatus struct {
	Role      string     `json:"role"`
	DataDir   string     `json:"data_dir"`
	Databases []dbStatus `json:"databases"`

	Replication *replicationStatus `json:"replication,omitempty"`
}

type dbStatus struct {
	Name       string    `json:"name"`
	TXID       uint64    `json:"txid"`
	Checksum   string    `json:"checksum"`
	PageSize   uint32    `json:"page_size"`
	Pages      uint32    `json:"pages"`
	WAL        bool      `json:"wal"`
	LTXFiles   uint64    `json:"ltx_files"`
	LTXBytes   uint64    `json:"ltx_bytes"`
	LastCommit time.Time `json:"last_commit,omitzero"`
	Failed     string    `json:"failed,omitempty"`
}

func storeStatus(store *mount.Store) nodeStatus {
	st := nodeStatus{Role: "primary", DataDir: store.DataDir(), Databases: []dbStatus{}}
	for _, db := range store.DBs() {
		s := db.Status()
		st.Databases = append(st.Databases, dbStatus{
			Name: s.Name, TXID: uint64(s.Pos.TXID), Checksum: s.Pos.PostApplyChecksum.String(),
			PageSize: s.PageSize, Pages: s.Commit, WAL: s.WAL,
			LTXFiles: s.Stats.LTXFiles, LTXBytes: s.Stats.LTXBytes, LastCommit: s.Stats.LastCommit, Failed: s.Failed,
		})
	}
	return st
}

// startStatusServer serves /status and /metrics, plus routes (pattern ->
// handler); decorate, if set, completes each /status document.
func startStatusServer(addr string, store *mount.Store, log *slog.Logger, routes map[string]http.Handler, decorate func(*nodeStatus)) (*statusServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(storeCollector{store})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		st := storeStatus(store)
		if decorate != nil {
			decorate(&st)
		}
		_ = enc.Encode(st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for pattern, h := range routes {
		mux.Handle(pattern, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http-addr %s: %w", addr, err)
	}
	s := &statusServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, log: log}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("serving status and metrics", "addr", ln.Addr().String())
	return s, nil
}

func (s *statusServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// storeCollector exports each database's capture state as Prometheus
// metrics, read at scrape time.
type storeCollector struct{ store *mount.Store }

var (
	descTXID     = prometheus.NewDesc("pagefs_db_txid", "TXID of the newest LTX file of the database.", []string{"db"}, nil)
	descPages    = prometheus.NewDesc("pagefs_db_pages", "Database size in pages.", []string{"db"}, nil)
	descLTXFiles = prometheus.NewDesc("pagefs_ltx_files_total", "LTX files written since the mount started.", []string{"db"}, nil)
	descLTXBytes = prometheus.NewDesc("pagefs_ltx_bytes_total", "Bytes of LTX written since the mount started.", []string{"db"}, nil)
	descLTXPages = prometheus.NewDesc("pagefs_ltx_pages_total", "Pages written into LTX files since the mount started.", []string{"db"}, nil)
	descFailed   = prometheus.NewDesc("pagefs_db_capture_failed", "1 if capture stopped for the database.", []string{"db"}, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTXID, descPages, descLTXFiles, descLTXBytes, descLTXPages, descFailed} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, db := range c.store.DBs() {
		s := db.Status()
		failed := 0.0
		if s.Failed != "" {
			failed = 1
		}
		ch <- prometheus.MustNewConstMetric(descTXID, prometheus.GaugeValue, float64(s.Pos.TXID), s.Name)
		ch <- prometheus.MustNewConstMetric(descPages, prometheus.GaugeValue, float64(s.Commit), s.Name)
		ch <- prometheus.MustNewConstMetric(descLTXFiles, prometheus.CounterValue, float64(s.Stats.LTXFiles), s.Name)
		ch <- prometheus.MustNewConstMetric(descLTXBytes, prometheus.CounterValue, float64(s.Stats.LTXBytes), s.Name)
		ch <- prometheus.MustNewConstMetric(descLTXPages, prometheus.CounterValue, float64(s.Stats.Pages), s.Name)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.GaugeValue, failed, s.Name)
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a running mount's databases and their TXIDs",
		Description: `Asks a running "pagefs mount --http-addr ADDR" for its status and prints
each database's TXID, size and capture state.

Example:
   pagefs mount --http-addr 127.0.0.1:9090 /litefs &
   pagefs status --http-addr 127.0.0.1:9090`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http-addr", Value: "127.0.0.1:9090", Usage: "the mount's status `ADDR`", EnvVars: []string{"PAGEFS_HTTP_ADDR"}},
			&cli.BoolFlag{Name: "json", Usage: "print the raw JSON"},
		},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.String("http-addr")+"/status", nil)
			if err != nil {
				return cli.Exit(fmt.Sprintf("pagefs status: %v", err), 2)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return cli.Exit(fmt.Sprintf("pagefs status: no mount answers at %s: %v", c.String("http-addr"), err), 1)
			}
			defer resp.Body.Close()
			var st nodeStatus
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return cli.Exit(fmt.Sprintf("pagefs status: bad answer from %s: %v", c.String("http-addr"), err), 1)
			}
			w := c.App.Writer
			if c.Bool("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(w, "role: %s\ndata: %s\n", st.Role, st.DataDir)
			fmt.Fprintf(w, "%-30s %10s %10s %5s  %s\n", "DATABASE", "TXID", "PAGES", "WAL", "STATE")
			for _, d := range st.Databases {
				state := "ok"
				if d.Failed != "" {
					state = "FAILED: " + d.Failed
				} else if r := st.Replication; r != nil && len(r.Paused[d.Name]) > 0 {
					state = fmt.Sprintf("paused: processes %v hold it open for writing from when this node was primary", r.Paused[d.Name])
				}
				fmt.Fprintf(w, "%-30s %10d %10d %5v  %s\n", d.Name, d.TXID, d.Pages, d.WAL, state)
			}
			return nil
		},
	}
}
