// Reference Echo client instrumented with the real go-grpc-prometheus client
// interceptors: runs the client scenario, prints the codes it got as JSON on
// stdout and writes its grpc_client_* families, in Prometheus' text format,
// to the --page file.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	pb "grpcprom/test/echopb"

	grpc_prometheus "github.com/grpc-ecosystem/go-grpc-prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

var metrics = grpc_prometheus.NewClientMetrics()

// codes holds [step, Go code name] pairs in the order the steps ran.
var codes [][2]string

// note records the code a step ended with.
func note(step string, err error) {
	codes = append(codes, [2]string{step, status.Code(err).String()})
}

// dial opens a channel of its own (fail-fast, no proxy) with the interceptors.
func dial(target string) *grpc.ClientConn {
	conn, err := grpc.Dial(target, grpc.WithInsecure(), grpc.WithNoProxy(),
		grpc.WithUnaryInterceptor(metrics.UnaryClientInterceptor()),
		grpc.WithStreamInterceptor(metrics.StreamClientInterceptor()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	return conn
}

func req(code, sleepMs, responses int32) *pb.EchoRequest {
	return &pb.EchoRequest{Code: code, SleepMs: sleepMs, Responses: responses, Text: "x"}
}

// within gives a context ending after ms milliseconds (negative: already ended).
func within(ms int) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), time.Now().Add(time.Duration(ms)*time.Millisecond))
}

// unary makes one Unary call with a deadline in ms.
func unary(step string, stub pb.EchoClient, r *pb.EchoRequest, ms int) {
	ctx, cancel := within(ms)
	defer cancel()
	_, err := stub.Unary(ctx, r)
	note(step, err)
}

// serverStream reads a ServerStream call to its end.
func serverStream(step string, stub pb.EchoClient, r *pb.EchoRequest, ms int) {
	ctx, cancel := within(ms)
	defer cancel()
	stream, err := stub.ServerStream(ctx, r)
	for err == nil {
		_, err = stream.Recv()
	}
	if err == io.EOF {
		err = nil
	}
	note(step, err)
}

// clientStream sends the requests, then closes and reads the reply.
func clientStream(step string, stub pb.EchoClient, rs ...*pb.EchoRequest) {
	ctx, cancel := within(10000)
	defer cancel()
	stream, err := stub.ClientStream(ctx)
	for _, r := range rs {
		if err != nil {
			break
		}
		err = stream.Send(r)
	}
	if err == nil || err == io.EOF { // io.EOF from Send: the status comes with the reply
		_, err = stream.CloseAndRecv()
	}
	note(step, err)
}

// bidiStep is one step of a Bidi call: send r, then read `read` replies.
type bidiStep struct {
	r    *pb.EchoRequest
	read int
}

// bidi runs the steps, then (closeSend) half-closes, then reads to the end;
// cancelAt > 0 cancels the call after that many steps instead.
func bidi(step string, stub pb.EchoClient, ms int, closeSend bool, cancelAt int, steps ...bidiStep) {
	ctx, cancel := within(ms)
	defer cancel()
	stream, err := stub.Bidi(ctx)
	for i, s := range steps {
		if err != nil {
			break
		}
		if err = stream.Send(s.r); err == io.EOF {
			err = nil // the call has ended: its status comes from Recv
			break
		}
		for n := 0; n < s.read && err == nil; n++ {
			_, err = stream.Recv()
		}
		if cancelAt == i+1 {
			cancel()
		}
	}
	if err == nil && closeSend {
		err = stream.CloseSend()
	}
	for err == nil {
		_, err = stream.Recv()
	}
	if err == io.EOF {
		err = nil
	}
	note(step, err)
}

// scenario is the client scenario, the same in every client language.
func scenario(target, silent, down string) {
	conn := dial(target)
	defer conn.Close()
	stub := pb.NewEchoClient(conn)
	for i := 0; i < 3; i++ {
		unary("unary ok", stub, req(0, 0, 0), 10000)
	}
	unary("unary not found", stub, req(5, 0, 0), 10000)
	serverStream("server stream ok", stub, req(0, 0, 3), 10000)
	serverStream("server stream aborted", stub, req(10, 0, 2), 10000)
	clientStream("client stream ok", stub, req(0, 0, 0), req(0, 0, 0), req(0, 0, 0))
	clientStream("client stream invalid argument", stub, req(0, 0, 0), req(3, 0, 0))
	bidi("bidi ok", stub, 10000, true, 0, bidiStep{req(0, 0, 1), 1}, bidiStep{req(0, 0, 2), 2})
	bidi("bidi internal", stub, 10000, false, 0, bidiStep{req(13, 0, 0), 0})

	// Each call to the silent and the down server on a channel of its own.
	fresh := func(addr string, call func(pb.EchoClient)) {
		c := dial(addr)
		call(pb.NewEchoClient(c))
		c.Close()
	}
	fresh(silent, func(s pb.EchoClient) { unary("silent unary", s, req(0, 0, 0), 300) })
	fresh(silent, func(s pb.EchoClient) { serverStream("silent server stream", s, req(0, 0, 1), 300) })
	fresh(down, func(s pb.EchoClient) { unary("down unary", s, req(0, 0, 0), 10000) })
	fresh(down, func(s pb.EchoClient) { serverStream("down server stream", s, req(0, 0, 1), 10000) })
	fresh(down, func(s pb.EchoClient) { clientStream("down client stream", s, req(0, 0, 0)) })
	fresh(down, func(s pb.EchoClient) { bidi("down bidi", s, 10000, false, 0, bidiStep{req(0, 0, 0), 0}) })

	unary("unary past deadline", stub, req(0, 0, 0), -1000)
	serverStream("server stream deadline", stub, req(0, 2000, 3), 300)
	bidi("bidi deadline", stub, 300, false, 0, bidiStep{req(0, 2000, 1), 1})
	{
		ctx, cancel := context.WithCancel(context.Background())
		t := time.AfterFunc(100*time.Millisecond, cancel)
		_, err := stub.Unary(ctx, req(0, 2000, 0))
		t.Stop()
		cancel()
		note("unary cancelled", err)
	}
	bidi("bidi cancelled", stub, 10000, false, 1, bidiStep{req(0, 0, 1), 1})
}

func main() {
	target := flag.String("target", "", "HOST:PORT of a healthy Echo server")
	silent := flag.String("silent", "", "HOST:PORT of a listener that never answers")
	down := flag.String("down", "", "HOST:PORT where nothing listens")
	page := flag.String("page", "", "file to write the grpc_client_* families to")
	flag.Parse()
	if *target == "" || *silent == "" || *down == "" || *page == "" {
		fmt.Fprintln(os.Stderr, "usage: echo_go_client --target HOST:PORT --silent HOST:PORT --down HOST:PORT --page FILE")
		os.Exit(2)
	}
	metrics.EnableClientHandlingTimeHistogram()
	metrics.EnableClientStreamReceiveTimeHistogram()
	metrics.EnableClientStreamSendTimeHistogram()
	scenario(*target, *silent, *down)

	registry := prometheus.NewRegistry()
	registry.MustRegister(metrics)
	families, err := registry.Gather()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gather:", err)
		os.Exit(1)
	}
	f, err := os.Create(*page)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(f, mf); err != nil {
			fmt.Fprintln(os.Stderr, "write page:", err)
			os.Exit(1)
		}
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(codes)
	fmt.Println(string(out))
}
