#!/usr/bin/ruby
# Test client in Ruby (ruby-grpc): runs the client scenario (as
# tests/go_reference/client/main.go) and prints the codes it got as JSON,
# [[step, code], ...]. The build copies it beside its generated stubs
# (echo_pb.rb, echo_services_pb.rb).
#   echo_client.rb --scenario --target HOST:PORT --silent HOST:PORT --down HOST:PORT
require 'json'
require 'optparse'

options = {}
OptionParser.new do |o|
  o.on('--scenario') { options[:scenario] = true }
  o.on('--target HOST:PORT') { |v| options[:target] = v }
  o.on('--silent HOST:PORT') { |v| options[:silent] = v }
  o.on('--down HOST:PORT') { |v| options[:down] = v }
end.parse!
unless options[:scenario] && options[:target] && options[:silent] && options[:down]
  warn 'usage: echo_client.rb --scenario --target HOST:PORT --silent HOST:PORT --down HOST:PORT'
  exit 2
end
$LOAD_PATH.unshift(File.join(__dir__, '..', 'servers')) # the Ruby server's stubs
require 'grpc'
require 'echo_services_pb'

include Grpcprom::Test

# ruby-grpc 1.51 cannot end a server stream whose first read fails (a
# deadline before any reply): that read's batch held the receiving of the
# initial metadata, and the status batch asks for it again, which core
# refuses (CallError, the status never received). A failed read has used
# that op up: it is marked received, so the status batch asks for the status
# alone, as ruby-grpc's bidi reads do.
module ReadFailureUsesInitialMetadata
  def remote_read
    super
  rescue GRPC::Core::CallError
    @metadata_received = true
    raise
  end
end
GRPC::ActiveCall.prepend(ReadFailureUsesInitialMetadata)

# Go's codes.Code names, indexed by the numeric code.
CODE_NAMES = %w[OK Canceled Unknown InvalidArgument DeadlineExceeded NotFound AlreadyExists
                PermissionDenied ResourceExhausted FailedPrecondition Aborted OutOfRange
                Unimplemented Internal Unavailable DataLoss Unauthenticated].freeze

$steps = []
$channels = 0

# Runs one step's call; records the code it ended with (a raised status, or OK).
def step(name)
  yield
  $steps << [name, 'OK']
rescue GRPC::BadStatus => e
  $steps << [name, CODE_NAMES.fetch(e.code, 'Unknown')]
end

# A stub on a channel of its own: distinct channel args keep gRPC from
# sharing one connection between channels.
def new_stub(addr)
  $channels += 1
  Echo::Stub.new(addr, :this_channel_is_insecure,
                 channel_args: { 'grpcprom.channel_id' => $channels,
                                 'grpc.use_local_subchannel_pool' => 1,
                                 'grpc.enable_http_proxy' => 0 })
end

def req(code: 0, sleep_ms: 0, responses: 0)
  EchoRequest.new(code: code, sleep_ms: sleep_ms, responses: responses, text: 'x')
end

def within(ms)
  Time.now + ms / 1000.0
end

# A ServerStream call read to its end.
def server_stream(stub, request, ms)
  stub.server_stream(request, deadline: within(ms)).each { |_| }
end

# A Bidi call: each [request, replies to read] in turn; then half-close if
# asked, or cancel after `cancel_at` steps; then read to the end. Requests go
# through a queue, as ruby-grpc writes them from a thread of its own.
def bidi(stub, ms, steps, close_send: false, cancel_at: 0)
  requests = Queue.new
  op = stub.bidi(Enumerator.new { |out| while (r = requests.pop) != :close do out << r end },
                 deadline: within(ms), return_op: true)
  replies = op.execute
  begin
    steps.each_with_index do |(request, read), i|
      requests << request
      read.times { replies.next }
      op.cancel if cancel_at == i + 1
    end
    requests << :close if close_send
    loop { replies.next } # StopIteration at the end, a raised status on an error
  ensure
    requests << :close # lets ruby-grpc's writing thread end
  end
end

def scenario(target, silent, down)
  stub = new_stub(target)
  3.times { step('unary ok') { stub.unary(req, deadline: within(10_000)) } }
  step('unary not found') { stub.unary(req(code: 5), deadline: within(10_000)) }
  step('server stream ok') { server_stream(stub, req(responses: 3), 10_000) }
  step('server stream aborted') { server_stream(stub, req(code: 10, responses: 2), 10_000) }
  step('client stream ok') { stub.client_stream([req, req, req], deadline: within(10_000)) }
  step('client stream invalid argument') do
    stub.client_stream([req, req(code: 3)], deadline: within(10_000))
  end
  step('bidi ok') { bidi(stub, 10_000, [[req(responses: 1), 1], [req(responses: 2), 2]], close_send: true) }
  step('bidi internal') { bidi(stub, 10_000, [[req(code: 13), 0]]) }

  # Each call to the silent and the down server on a channel of its own.
  step('silent unary') { new_stub(silent).unary(req, deadline: within(300)) }
  step('silent server stream') { server_stream(new_stub(silent), req(responses: 1), 300) }
  step('down unary') { new_stub(down).unary(req, deadline: within(10_000)) }
  step('down server stream') { server_stream(new_stub(down), req(responses: 1), 10_000) }
  step('down client stream') { new_stub(down).client_stream([req], deadline: within(10_000)) }
  step('down bidi') { bidi(new_stub(down), 10_000, [[req, 0]]) }

  step('unary past deadline') { stub.unary(req, deadline: within(-1000)) }
  step('server stream deadline') { server_stream(stub, req(sleep_ms: 2000, responses: 3), 300) }
  step('bidi deadline') { bidi(stub, 300, [[req(sleep_ms: 2000, responses: 1), 1]]) }
  step('unary cancelled') do
    op = stub.unary(req(sleep_ms: 2000), deadline: within(10_000), return_op: true)
    canceller = Thread.new { sleep 0.1; op.cancel }
    begin
      op.execute
    ensure
      canceller.join
    end
  end
  step('bidi cancelled') { bidi(stub, 10_000, [[req(responses: 1), 1]], cancel_at: 1) }
end

scenario(options[:target], options[:silent], options[:down])
puts JSON.generate($steps)
