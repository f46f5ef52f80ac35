import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A PEM certificate and its private key on disk. */
export interface KeyPair {
  certFile: string;
  keyFile: string;
}

export interface CertificateRequest {
  /** File stem inside the PKI directory. */
  name: string;
  commonName: string;
  /** Subject O values; Kubernetes reads them as the user's groups. */
  organizations?: string[];
  /** DNS names and IP addresses for a serving certificate. */
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: "server" | "client" | "server+client";
  /**
   * The subject in openssl's -subj syntax, taken as is (for crafted names:
   * escapes, repeated or multi-valued attributes, UTF-8); replaces
   * commonName and organizations.
   */
  subject?: string;
  /** "+" in `subject` joins attributes into one RDN. */
  multiValueRdn?: boolean;
  /**
   * openssl's string_mask: "utf8only" (UTF8String) or "default" (the
   * smallest of PrintableString, T61String and BMPString that holds the value).
   */
  stringMask?: "utf8only" | "default";
  /** The serial number in hex, "-" first for a negative one (default: 16 random bytes, positive). */
  serial?: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(`openssl ${args[0]} failed (the test PKI needs the openssl CLI): ${detail}`, { cause: error });
  }
}

function subject(commonName: string, organizations: string[] = []): string {
  const escape = (value: string) => value.replace(/[/\\]/g, (c) => `\\${c}`);
  return organizations.map((o) => `/O=${escape(o)}`).join("") + `/CN=${escape(commonName)}`;
}

/**
 * A throwaway CA, valid for two days; its key never leaves `dir`. Its
 * subject is CN=<name>, or `subject` in openssl's -subj syntax (UTF-8).
 */
export async function createCertificateAuthority(dir: string, name: string, subjectOverride?: string): Promise<KeyPair> {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  await openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", pair.keyFile, "-out", pair.certFile, "-days", "2", "-subj", subjectOverride ?? subject(name), ...(subjectOverride ? ["-utf8"] : []),
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return pair;
}

function serialArgument(serial: string | undefined): string {
  if (serial === undefined) return `0x${(randomBytes(1)[0]! & 0x7f).toString(16).padStart(2, "0")}${randomBytes(15).toString("hex")}`;
  return serial.startsWith("-") ? `-0x${serial.slice(1)}` : `0x${serial}`;
}

export async function issueCertificate(dir: string, ca: KeyPair, request: CertificateRequest): Promise<KeyPair> {
  const pair = { certFile: join(dir, `${request.name}.crt`), keyFile: join(dir, `${request.name}.key`) };
  const csr = join(dir, `${request.name}.csr`);
  const extensions = join(dir, `${request.name}.ext`);
  const usages = { server: "serverAuth", client: "clientAuth", "server+client": "serverAuth,clientAuth" };
  const altNames = [
    ...(request.dnsNames ?? []).map((d) => `DNS:${d}`),
    ...(request.ipAddresses ?? []).map((ip) => `IP:${ip}`),
  ];
  await writeFile(
    extensions,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${usages[request.usage]}`,
      ...(altNames.length > 0 ? [`subjectAltName=${altNames.join(",")}`] : []),
    ].join("\n") + "\n",
  );
  const reqConfig = join(dir, `${request.name}.req.cnf`);
  await writeFile(reqConfig, `[req]\ndistinguished_name = dn\nstring_mask = ${request.stringMask ?? "utf8only"}\nutf8 = yes\n[dn]\n`);
  await openssl([
    "req", "-new", "-config", reqConfig, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", pair.keyFile, "-out", csr, "-subj", request.subject ?? subject(request.commonName, request.organizations),
    ...(request.multiValueRdn ? ["-multivalue-rdn"] : []),
  ]);
  await openssl([
    // A random serial, not -CAcreateserial: certificates issued in parallel
    // would race on the CA's serial file.
    "x509", "-req", "-in", csr, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-set_serial", serialArgument(request.serial),
    "-days", "2", "-extfile", extensions, "-out", pair.certFile,
  ]);
  return pair;
}

/** An EC key pair for signing, e.g. kube-apiserver's service-account tokens. */
export async function createSigningKey(dir: string, name: string): Promise<{ privateKeyFile: string; publicKeyFile: string }> {
  const privateKeyFile = join(dir, `${name}.key`);
  const publicKeyFile = join(dir, `${name}.pub`);
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", privateKeyFile]);
  await openssl(["pkey", "-in", privateKeyFile, "-pubout", "-out", publicKeyFile]);
  return { privateKeyFile, publicKeyFile };
}
