// Hand-written decoders for the hottest requests (filled in below).
export const requestDecoders = new Map<string, (bytes: Buffer) => unknown>();
