// Reference Echo server instrumented with the real go-grpc-prometheus, for comparing metrics.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	pb "grpcprom/test/echopb"

	grpc_prometheus "github.com/grpc-ecosystem/go-grpc-prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type echoServer struct{}

// sleep waits ms milliseconds; it returns the call's status error if the call ends first.
func sleep(ctx context.Context, ms int32) error {
	if ms <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// fail returns the error for a non-zero code, nil for 0.
func fail(code int32) error {
	if code == 0 {
		return nil
	}
	return status.Errorf(codes.Code(code), "requested code %d", code)
}

// sendReplies sends n replies echoing text.
func sendReplies(send func(*pb.EchoReply) error, req *pb.EchoRequest) error {
	for i := int32(0); i < req.Responses; i++ {
		if err := send(&pb.EchoReply{Text: fmt.Sprintf("%s#%d", req.Text, i)}); err != nil {
			return err
		}
	}
	return nil
}

func (echoServer) Unary(ctx context.Context, req *pb.EchoRequest) (*pb.EchoReply, error) {
	if err := sleep(ctx, req.SleepMs); err != nil {
		return nil, err
	}
	if err := fail(req.Code); err != nil {
		return nil, err
	}
	return &pb.EchoReply{Text: req.Text}, nil
}

func (echoServer) ServerStream(req *pb.EchoRequest, stream pb.Echo_ServerStreamServer) error {
	if err := sleep(stream.Context(), req.SleepMs); err != nil {
		return err
	}
	if err := sendReplies(stream.Send, req); err != nil {
		return err
	}
	return fail(req.Code)
}

func (echoServer) ClientStream(stream pb.Echo_ClientStreamServer) error {
	last := &pb.EchoRequest{}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		last = req
	}
	if err := sleep(stream.Context(), last.SleepMs); err != nil {
		return err
	}
	if err := fail(last.Code); err != nil {
		return err
	}
	return stream.SendAndClose(&pb.EchoReply{Text: last.Text})
}

func (echoServer) Bidi(stream pb.Echo_BidiServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sleep(stream.Context(), req.SleepMs); err != nil {
			return err
		}
		if err := sendReplies(stream.Send, req); err != nil {
			return err
		}
		if err := fail(req.Code); err != nil {
			return err
		}
	}
}

// parseBuckets reads increasing histogram bounds in seconds, "a,b,c" (GRPCPROM_BUCKETS' syntax).
func parseBuckets(text string) ([]float64, error) {
	var bounds []float64
	for _, field := range strings.Split(text, ",") {
		b, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
		if err != nil {
			return nil, err
		}
		if len(bounds) > 0 && b <= bounds[len(bounds)-1] {
			return nil, fmt.Errorf("bounds not increasing at %q", field)
		}
		bounds = append(bounds, b)
	}
	return bounds, nil
}

func main() {
	port := flag.Int("port", 0, "gRPC port on 127.0.0.1 (0 = any free port)")
	metricsPort := flag.Int("metrics-port", 0, "HTTP /metrics port on 127.0.0.1 (0 = any free port)")
	buckets := flag.String("buckets", "", "histogram bounds in seconds, comma-separated (default: Prometheus' DefBuckets)")
	// The same server and page without the per-call instrumentation: the
	// baseline scripts/bench measures go-grpc-prometheus' own overhead against.
	noInterceptors := flag.Bool("no-interceptors", false, "serve without go-grpc-prometheus' interceptors (calls are not counted)")
	flag.Parse()

	var histogramOpts []grpc_prometheus.HistogramOption
	if *buckets != "" {
		bounds, err := parseBuckets(*buckets)
		if err != nil {
			fmt.Fprintln(os.Stderr, "--buckets:", err)
			os.Exit(2)
		}
		histogramOpts = append(histogramOpts, grpc_prometheus.WithHistogramBuckets(bounds))
	}

	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen grpc:", err)
		os.Exit(1)
	}
	mlis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *metricsPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen metrics:", err)
		os.Exit(1)
	}

	grpc_prometheus.EnableHandlingTimeHistogram(histogramOpts...)
	var serverOpts []grpc.ServerOption
	if !*noInterceptors {
		serverOpts = append(serverOpts,
			grpc.UnaryInterceptor(grpc_prometheus.UnaryServerInterceptor),
			grpc.StreamInterceptor(grpc_prometheus.StreamServerInterceptor))
	}
	server := grpc.NewServer(serverOpts...)
	pb.RegisterEchoServer(server, echoServer{})
	grpc_prometheus.Register(server)

	// /metrics is the page a Go service would serve: the default registry,
	// with Go runtime, process and handler series that change on every
	// scrape. /grpc-metrics has go-grpc-prometheus' series alone, so a test
	// can wait for it to stop changing.
	grpcOnly := prometheus.NewRegistry()
	grpcOnly.MustRegister(grpc_prometheus.DefaultServerMetrics)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/grpc-metrics", promhttp.HandlerFor(grpcOnly, promhttp.HandlerOpts{}))
	httpServer := &http.Server{Handler: mux}

	go func() { _ = server.Serve(lis) }()
	go func() { _ = httpServer.Serve(mlis) }()

	fmt.Printf("READY %d %d\n", lis.Addr().(*net.TCPAddr).Port, mlis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	server.Stop()
	_ = httpServer.Close()
}
