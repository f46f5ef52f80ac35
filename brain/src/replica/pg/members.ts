// The replica set's members: one row per brain --name, with a member id that
// stays the same across restarts and a heartbeat (MemberList shows the
// members heard from recently).
import { randomBytes } from "node:crypto";
import type pg from "pg";

export interface Member {
  memberId: bigint;
  name: string;
  clientUrls: string[];
  heartbeatAt: Date;
}

function randomMemberId(): bigint {
  // A positive int64, never 0 (etcd's member ids are non-zero).
  return (randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn) || 1n;
}

/**
 * The member id of `name`: the one it registered with before, else a new
 * random one. Records its client URLs and a heartbeat. Safe when brains
 * register at once (one statement; the name's unique index decides).
 */
export async function registerMember(pool: pg.Pool, name: string, clientUrls: string[]): Promise<bigint> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { rows } = await pool.query<{ member_id: bigint }>(
        `INSERT INTO brain_member (member_id, name, client_urls, heartbeat_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (name) DO UPDATE SET client_urls = excluded.client_urls, heartbeat_at = now()
         RETURNING member_id`,
        [randomMemberId(), name, clientUrls],
      );
      return rows[0]!.member_id;
    } catch (error) {
      // Two names drew the same random id (2^-63): draw again.
      const code = (error as { code?: string; constraint?: string }).constraint;
      if (code === "brain_member_pkey" && attempt < 3) continue;
      throw error;
    }
  }
}

/** Marks `memberId` alive now (PostgreSQL's clock), with new client URLs when given. */
export async function heartbeat(pool: pg.Pool, memberId: bigint, clientUrls?: string[]): Promise<void> {
  const { rowCount } = await pool.query(
    "UPDATE brain_member SET heartbeat_at = now(), client_urls = coalesce($2, client_urls) WHERE member_id = $1",
    [memberId, clientUrls ?? null],
  );
  if (rowCount === 0) throw new Error(`member ${memberId} is not registered`);
}

/** Members heard from in the last `withinMs` (PostgreSQL's clock), by name. */
export async function listMembers(pool: pg.Pool, withinMs = 30_000): Promise<Member[]> {
  const { rows } = await pool.query<{ member_id: bigint; name: string; client_urls: string[]; heartbeat_at: Date }>(
    "SELECT member_id, name, client_urls, heartbeat_at FROM brain_member WHERE heartbeat_at > now() - $1 * interval '1 millisecond' ORDER BY name",
    [withinMs],
  );
  return rows.map((row) => ({ memberId: row.member_id, name: row.name, clientUrls: row.client_urls, heartbeatAt: row.heartbeat_at }));
}
