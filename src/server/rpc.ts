/** The Connect services (gRPC, gRPC-Web and Connect protocol): thin adapters onto src/api. */
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { StreamService } from "../../gen/events/v1/events_pb.js";
import { ExecutionEventsService } from "../../gen/kubiya/v1/kubiya_pb.js";
import { EventsService } from "../../gen/polos/v1/polos_pb.js";
import { SailhouseService } from "../../gen/sailhouse/v1/sailhouse_pb.js";
import { TaskEventsService } from "../../gen/terminaluse/v1/terminaluse_pb.js";
import { toConnectError, type CallContext } from "../api/common.js";
import type { KubiyaApi } from "../api/kubiya.js";
import type { PolosApi } from "../api/polos.js";
import type { SailhouseApi } from "../api/sailhouse.js";
import type { AdminApi } from "../api/admin.js";
import type { TerminalUseApi } from "../api/terminaluse.js";
import { AdminService } from "../../gen/admin/v1/admin_pb.js";
import type { StreamsApi } from "../api/streams.js";
import { PROJECT } from "./auth.js";
import { HEADER } from "./http/wire.js";

export const SERVICES: readonly DescService[] = [StreamService, EventsService, ExecutionEventsService, SailhouseService, TaskEventsService, AdminService];

/** The call's project was settled by the pipeline's policy (src/server/pipeline.ts). */
export function callContext(ctx: HandlerContext): CallContext {
  const project = ctx.values.get(PROJECT);
  const binaryWire = !(ctx.requestHeader.get("content-type") ?? "").includes("json");
  return { signal: ctx.signal, binaryWire, ...(project ? { project } : {}) };
}

async function unary<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw toConnectError(err);
  }
}

async function* streaming<T>(open: () => Promise<AsyncIterable<T>>): AsyncGenerator<T> {
  try {
    yield* await open();
  } catch (err) {
    throw toConnectError(err);
  }
}

async function* flatten<T>(batches: AsyncIterable<T[]>): AsyncGenerator<T> {
  for await (const b of batches) yield* b;
}

export interface RpcDeps {
  streams: StreamsApi;
  polos: PolosApi;
  kubiya: KubiyaApi;
  sailhouse: SailhouseApi;
  admin: AdminApi;
  terminaluse: TerminalUseApi;
}

export function registerRpc(router: ConnectRouter, d: RpcDeps): void {
  router.service(StreamService, {
    publish: (req, ctx) => unary(() => d.streams.publish(req, callContext(ctx))),
    publishStream: (reqs, ctx) => streaming(async () => d.streams.publishStream(reqs, callContext(ctx))),
    subscribe: (req, ctx) => streaming(() => d.streams.subscribe(req, callContext(ctx))),
    listEvents: (req, ctx) => unary(() => d.streams.listEvents(req, callContext(ctx))),
    listStreams: (req, ctx) => unary(() => d.streams.listStreams(req, callContext(ctx))),
    purgeStream: (req, ctx) => unary(() => d.streams.purgeStream(req, callContext(ctx))),
  });
  router.service(EventsService, {
    publishEvents: (req, ctx) => unary(() => d.polos.publishEvents(req, callContext(ctx))),
    listEvents: (req, ctx) => unary(() => d.polos.listEvents(req, callContext(ctx))),
    streamEvents: (req, ctx) => streaming(async () => flatten(await d.polos.streamEvents(req, callContext(ctx)))),
  });
  router.service(ExecutionEventsService, {
    publishExecutionEvent: (req, ctx) => unary(() => d.kubiya.publishExecutionEvent(req, callContext(ctx))),
    streamExecutionEvents: (req, ctx) => streaming(async () => flatten(await d.kubiya.streamExecutionEvents(req, callContext(ctx)))),
  });
  const admin = <T>(ctx: HandlerContext, run: () => Promise<T>): Promise<T> =>
    unary(async () => {
      d.admin.authorize(ctx.requestHeader.get(HEADER.authorization));
      return run();
    });
  router.service(AdminService, {
    createApiKey: (req, ctx) => admin(ctx, () => d.admin.createApiKey(req)),
    revokeApiKey: (req, ctx) => admin(ctx, () => d.admin.revokeApiKey(req)),
    listApiKeys: (req, ctx) => admin(ctx, () => d.admin.listApiKeys(req)),
  });
  router.service(SailhouseService, {
    sendEvent: (req, ctx) => unary(() => d.sailhouse.sendEvent(req, callContext(ctx))),
    putSubscription: (req, ctx) => unary(() => d.sailhouse.putSubscription(req, callContext(ctx))),
    pullEvent: (req, ctx) => unary(() => d.sailhouse.pullEvent(req, callContext(ctx))),
    streamSubscription: (req, ctx) => streaming(() => d.sailhouse.streamSubscription(req, callContext(ctx))),
    ackEvent: (req, ctx) => unary(async () => (await d.sailhouse.ackEvent(req, callContext(ctx)), {})),
    nackEvent: (req, ctx) => unary(async () => (await d.sailhouse.nackEvent(req, callContext(ctx)), {})),
    listSubscriptionEvents: (req, ctx) => unary(() => d.sailhouse.listSubscriptionEvents(req, callContext(ctx))),
    createWaitGroupInstance: (req, ctx) => unary(() => d.sailhouse.createWaitGroupInstance(req, callContext(ctx))),
    startWaitGroupInstance: (req, ctx) => unary(async () => (await d.sailhouse.startWaitGroupInstance(req, callContext(ctx)), {})),
    listSubscriptions: (req, ctx) => unary(() => d.sailhouse.listSubscriptions(req, callContext(ctx))),
    getSubscription: (req, ctx) => unary(() => d.sailhouse.getSubscription(req, callContext(ctx))),
    deleteSubscription: (req, ctx) => unary(() => d.sailhouse.deleteSubscription(req, callContext(ctx))),
    listSubscriptionBacklogs: (req, ctx) => unary(() => d.sailhouse.listSubscriptionBacklogs(req, callContext(ctx))),
  });
  router.service(TaskEventsService, {
    createTask: (req, ctx) => unary(() => d.terminaluse.createTask(req, callContext(ctx))),
    getTask: (req, ctx) => unary(() => d.terminaluse.getTask(req, callContext(ctx))),
    sendTaskEvent: (req, ctx) => unary(() => d.terminaluse.sendTaskEvent(req, callContext(ctx))),
    listEvents: (req, ctx) => unary(() => d.terminaluse.listEvents(req, callContext(ctx))),
    getEvent: (req, ctx) => unary(() => d.terminaluse.getEvent(req, callContext(ctx))),
    streamTaskEvents: (req, ctx) => streaming(async () => flatten(await d.terminaluse.streamTaskEvents(req, callContext(ctx)))),
    listMessages: (req, ctx) => unary(() => d.terminaluse.listMessages(req, callContext(ctx))),
    listTasks: (req, ctx) => unary(() => d.terminaluse.listTasks(req, callContext(ctx))),
    getTaskByName: (req, ctx) => unary(() => d.terminaluse.getTaskByName(req, callContext(ctx))),
    cancelTask: (req, ctx) => unary(() => d.terminaluse.cancelTask(req, callContext(ctx))),
    updateTask: (req, ctx) => unary(() => d.terminaluse.updateTask(req, callContext(ctx))),
    streamTaskParts: (req, ctx) => streaming(async () => flatten(await d.terminaluse.streamTaskParts(req, callContext(ctx)))),
    listUiMessages: (req, ctx) => unary(() => d.terminaluse.listUiMessages(req, callContext(ctx))),
    getUiMessage: (req, ctx) => unary(() => d.terminaluse.getUiMessage(req, callContext(ctx))),
  });
}
