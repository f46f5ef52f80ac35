// Who is calling: the verified downstream client certificate's subject
// (CN = user, O = groups), as Envoy exposes it in connection properties.

export class Identity {
  user: string = "system:anonymous";
  groups: string[] = [];
  authenticated: bool = false;

  inAnyGroup(groups: string[]): bool {
    for (let i = 0; i < groups.length; i++) if (this.groups.includes(groups[i])) return true;
    return false;
  }
}

/** Parses an RFC 2253 subject ("CN=alice,O=devs,O=ops"), honouring "\," escapes. */
export function identityFromSubject(subject: string | null): Identity {
  const identity = new Identity();
  if (subject === null || subject.length == 0) {
    identity.groups.push("system:unauthenticated");
    return identity;
  }
  let user = "";
  let current = "";
  const attributes = new Array<string>();
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charAt(i);
    if (c == "\\" && i + 1 < subject.length) {
      current += subject.charAt(i + 1);
      i++;
    } else if (c == "," || c == "+") {
      attributes.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  attributes.push(current);
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i].trim();
    const eq = attribute.indexOf("=");
    if (eq < 0) continue;
    const type = attribute.substring(0, eq).trim().toUpperCase();
    const value = attribute.substring(eq + 1).trim();
    if (type == "CN") user = value;
    else if (type == "O") identity.groups.push(value);
  }
  if (user.length == 0) {
    identity.groups = ["system:unauthenticated"];
    return identity;
  }
  identity.user = user;
  identity.authenticated = true;
  identity.groups.push("system:authenticated");
  return identity;
}
