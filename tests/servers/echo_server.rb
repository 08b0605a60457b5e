#!/usr/bin/ruby
# Echo test server in Ruby (ruby-grpc), serving tests/proto/echo.proto as the
# C and C++ servers do (see the proto for what each method does). The build
# copies it beside the other servers, where its stubs are generated
# (echo_pb.rb, echo_services_pb.rb).
#   echo_server.rb --port N   prints "READY <port>", serves until SIGINT/SIGTERM
require 'optparse'

options = { port: 0 }
OptionParser.new do |o|
  o.on('--port N', Integer) { |v| options[:port] = v }
  o.on('--threads N', Integer) {} # accepted, as by the other servers
end.parse!
$LOAD_PATH.unshift(__dir__)
require 'grpc'
require 'echo_services_pb'

include Grpcprom::Test

# The echo service: each handler follows the proto's comments.
class EchoImpl < Echo::Service
  # Sleeps `ms` in 5 ms steps; false as soon as the call is cancelled.
  def self.sleep_unless_cancelled(call, ms)
    finish = Process.clock_gettime(Process::CLOCK_MONOTONIC) + ms / 1000.0
    until call.cancelled?
      left = finish - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      return true if left <= 0
      sleep([left, 0.005].min)
    end
    false
  end

  def self.check(code)
    raise GRPC::BadStatus.new_status_exception(code, 'requested') if code != 0
  end

  def self.cancelled!
    raise GRPC::BadStatus.new_status_exception(GRPC::Core::StatusCodes::CANCELLED, 'cancelled')
  end

  def unary(req, call)
    EchoImpl.cancelled! unless EchoImpl.sleep_unless_cancelled(call, req.sleep_ms)
    EchoImpl.check(req.code)
    EchoReply.new(text: req.text)
  end

  def server_stream(req, call)
    EchoImpl.cancelled! unless EchoImpl.sleep_unless_cancelled(call, req.sleep_ms)
    Enumerator.new do |out|
      req.responses.times { out << EchoReply.new(text: req.text) }
      EchoImpl.check(req.code)
    end
  end

  def client_stream(call)
    last = EchoRequest.new
    call.each_remote_read { |req| last = req }
    EchoImpl.cancelled! unless EchoImpl.sleep_unless_cancelled(call, last.sleep_ms)
    EchoImpl.check(last.code)
    EchoReply.new(text: last.text)
  end

  def bidi(requests, call)
    Enumerator.new do |out|
      requests.each do |req|
        EchoImpl.cancelled! unless EchoImpl.sleep_unless_cancelled(call, req.sleep_ms)
        req.responses.times { out << EchoReply.new(text: req.text) }
        EchoImpl.check(req.code)
      end
    end
  end
end

# ruby-grpc answers ResourceExhausted to a call that finds no free thread in
# its pool: the load test (96 calls at once) wants every call served.
server = GRPC::RpcServer.new(pool_size: 200, max_waiting_requests: 100_000)
port = server.add_http2_port("127.0.0.1:#{options[:port]}", :this_port_is_insecure)
server.handle(EchoImpl)
Thread.new do
  server.wait_till_running
  $stdout.puts "READY #{port}"
  $stdout.flush
end
server.run_till_terminated_or_interrupted(%w[INT TERM])
