%% An example distribution carrier over Unix domain sockets, for interop with pynode
%% (`pynode.runtime` listens on `unix:/path` endpoints).
%%
%%   erlc pynode_uds_dist.erl
%%   PYNODE_UDS_DIR=/tmp/d erl -pa . -proto_dist pynode_uds -no_epmd -start_epmd false \
%%       -name a@127.0.0.1 -setcookie c
%%
%% No EPMD: node Alive@Host listens on $PYNODE_UDS_DIR/Alive.sock and is dialled there
%% (one host only). A pynode that should talk to it listens on the same path for its own
%% name and is given the erl node's path (Node.add_endpoint). The handshake, ticks and
%% the connected phase are erts' own (dist_util and the inet driver), exactly as over TCP:
%% gen_tcp opens AF_UNIX stream sockets with {ifaddr, {local, Path}}.
-module(pynode_uds_dist).

-export([listen/1, listen/2, accept/1, accept_connection/5, setup/5, close/1, select/1,
         address/0, is_node_name/1, setopts/2, getopts/2]).
-export([accept_loop/2, do_accept/6, do_setup/6, tick/1, getstat/1]).

-include_lib("kernel/include/net_address.hrl").
-include_lib("kernel/include/dist_util.hrl").

-define(FAMILY, local).
-define(PROTOCOL, uds).

%% ---- naming -----------------------------------------------------------------------------

dir() ->
    case os:getenv("PYNODE_UDS_DIR") of
        false -> "/tmp";
        Dir -> Dir
    end.

path(Alive) -> filename:join(dir(), to_list(Alive) ++ ".sock").

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L.

split(Node) ->
    case string:split(atom_to_list(Node), "@") of
        [Alive, Host] when Alive =/= [], Host =/= [] -> {Alive, Host};
        _ -> error
    end.

select(Node) -> split(Node) =/= error.

is_node_name(Node) when is_atom(Node) -> select(Node);
is_node_name(_) -> false.

address() -> address(net_adm:localhost()).

address(Host) ->
    #net_address{address = {local, dir()}, host = Host, protocol = ?PROTOCOL, family = ?FAMILY}.

%% ---- listening --------------------------------------------------------------------------

listen(Name, _Host) -> listen(Name).

listen(Name) ->
    Path = path(Name),
    _ = prim_file:delete(Path),  % a stale socket of an earlier run (no file_server yet)
    case gen_tcp:listen(0, [{active, false}, {packet, 2}, {ifaddr, {local, Path}}]) of
        {ok, Listen} ->
            %% no EPMD hands out a creation: pick one, as a restarted node must differ
            Creation = rand:uniform(16#fffffff0) + 3,
            {ok, {Listen, address(), Creation}};
        Error ->
            Error
    end.

close(Listen) ->
    case inet:sockname(Listen) of
        {ok, {local, Path}} -> _ = prim_file:delete(Path);
        _ -> ok
    end,
    gen_tcp:close(Listen).

accept(Listen) ->
    spawn_opt(?MODULE, accept_loop, [self(), Listen], [link, {priority, max}]).

accept_loop(Kernel, Listen) ->
    case gen_tcp:accept(Listen) of
        {ok, Socket} ->
            Kernel ! {accept, self(), Socket, ?FAMILY, ?PROTOCOL},
            receive
                {Kernel, controller, Pid} ->
                    ok = gen_tcp:controlling_process(Socket, Pid),
                    Pid ! {self(), controller};
                {Kernel, unsupported_protocol} ->
                    exit(unsupported_protocol)
            end,
            accept_loop(Kernel, Listen);
        Error ->
            exit(Error)
    end.

accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    spawn_opt(?MODULE, do_accept, [self(), AcceptPid, Socket, MyNode, Allowed, SetupTime],
              [link, {priority, max}]).

do_accept(Kernel, AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    receive
        {AcceptPid, controller} ->
            Timer = dist_util:start_timer(SetupTime),
            HSData0 = hs_data(Kernel, MyNode, Socket, Timer),
            dist_util:handshake_other_started(HSData0#hs_data{allowed = Allowed})
    end.

%% ---- dialling ---------------------------------------------------------------------------

setup(Node, Type, MyNode, LongOrShortNames, SetupTime) ->
    spawn_opt(?MODULE, do_setup, [self(), Node, Type, MyNode, LongOrShortNames, SetupTime],
              [link, {priority, max}]).

do_setup(Kernel, Node, Type, MyNode, _LongOrShortNames, SetupTime) ->
    Timer = dist_util:start_timer(SetupTime),
    case split(Node) of
        {Alive, _Host} ->
            Opts = [{active, false}, {packet, 2}],  % list mode: dist_util matches lists
            case gen_tcp:connect({local, path(Alive)}, 0, Opts) of
                {ok, Socket} ->
                    HSData0 = hs_data(Kernel, MyNode, Socket, Timer),
                    dist_util:handshake_we_started(
                        HSData0#hs_data{other_node = Node, other_version = 6,
                                        request_type = Type});
                _ ->
                    ?shutdown(Node)
            end;
        error ->
            ?shutdown(Node)
    end.

%% ---- what dist_util needs ---------------------------------------------------------------

hs_data(Kernel, MyNode, Socket, Timer) ->
    #hs_data{
        kernel_pid = Kernel,
        this_node = MyNode,
        socket = Socket,
        timer = Timer,
        this_flags = 0,
        f_send = fun(S, D) -> gen_tcp:send(S, D) end,
        f_recv = fun(S, N, T) -> gen_tcp:recv(S, N, T) end,
        f_setopts_pre_nodeup =
            fun(S) -> inet:setopts(S, [{active, false}, {packet, 4}]) end,
        f_setopts_post_nodeup =
            fun(S) -> inet:setopts(S, [{active, true}, {deliver, port}, {packet, 4}]) end,
        f_getll = fun(S) -> inet:getll(S) end,
        f_address =
            fun(_S, Node) ->
                case split(Node) of
                    {_, Host} -> address(Host);
                    error -> ?shutdown(Node)
                end
            end,
        mf_tick = fun ?MODULE:tick/1,
        mf_getstat = fun ?MODULE:getstat/1,
        mf_setopts = fun ?MODULE:setopts/2,
        mf_getopts = fun ?MODULE:getopts/2
    }.

tick(Socket) ->
    case prim_inet:send(Socket, [], [force]) of
        {error, closed} -> self() ! {tcp_closed, Socket}, {error, closed};
        R -> R
    end.

getstat(Socket) ->
    case inet:getstat(Socket, [recv_cnt, send_cnt, send_pend]) of
        {ok, Stat} ->
            {ok, proplists:get_value(recv_cnt, Stat, 0), proplists:get_value(send_cnt, Stat, 0),
             proplists:get_value(send_pend, Stat, 0)};
        Error ->
            Error
    end.

setopts(Socket, Opts) -> inet:setopts(Socket, Opts).

getopts(Socket, Opts) -> inet:getopts(Socket, Opts).
