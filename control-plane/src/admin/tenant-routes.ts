// The admin API's tenant calls: protocol only; tenancy/tenants.ts does the work.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CreateTenantResponseSchema,
  DeleteTenantResponseSchema,
  IssueTenantKubeconfigResponseSchema,
  ListTenantsResponseSchema,
  RevokeTenantUserResponseSchema,
  TenantInfoSchema,
  type CreateTenantRequest,
  type DeleteTenantRequest,
  type IssueTenantKubeconfigRequest,
  type RevokeTenantUserRequest,
  type TenantInfo,
} from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import { ConfigError } from "../config/load-config.js";
import { TenantError, type Tenants, type TenantSummary } from "../tenancy/tenants.js";

const codes = { invalid: Code.InvalidArgument, "not-found": Code.NotFound, exists: Code.AlreadyExists, precondition: Code.FailedPrecondition } as const;

async function answer<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof TenantError) throw new ConnectError(error.message, codes[error.code]);
    if (error instanceof ConfigError) throw new ConnectError(error.message, Code.InvalidArgument);
    throw new ConnectError((error as Error).message, Code.Internal);
  }
}

function info(tenant: TenantSummary): TenantInfo {
  return create(TenantInfoSchema, { name: tenant.name, sharedViews: tenant.sharedViews, createdAt: tenant.createdAt.toISOString(), activeCertificates: tenant.activeCertificates });
}

function available(tenants: Tenants | undefined): Tenants {
  if (!tenants) throw new ConnectError("this control plane serves no config file to hold tenants", Code.FailedPrecondition);
  return tenants;
}

export function tenantRoutes(tenants: Tenants | undefined) {
  return {
    createTenant: (request: CreateTenantRequest) =>
      answer(async () => {
        const created = await available(tenants).create(request.name, request.sharedViews);
        return create(CreateTenantResponseSchema, { tenant: info(created.tenant), kubeconfig: created.kubeconfig.kubeconfig });
      }),
    deleteTenant: (request: DeleteTenantRequest) => answer(async () => create(DeleteTenantResponseSchema, { deleted: await available(tenants).delete(request.name) })),
    listTenants: () => answer(async () => create(ListTenantsResponseSchema, { tenants: (await available(tenants).list()).map(info) })),
    issueTenantKubeconfig: (request: IssueTenantKubeconfigRequest) =>
      answer(async () => {
        const issued = await available(tenants).issueKubeconfig(request.tenant, { user: request.user, groups: request.groups.length > 0 ? request.groups : undefined, ttlSeconds: request.ttlSeconds });
        return create(IssueTenantKubeconfigResponseSchema, { kubeconfig: issued.kubeconfig, expiresAt: issued.expiresAt.toISOString() });
      }),
    revokeTenantUser: (request: RevokeTenantUserRequest) =>
      answer(async () => create(RevokeTenantUserResponseSchema, { revokedCertificates: await available(tenants).revokeUser(request.tenant, request.user) })),
  };
}
