import { proxy_add_header_map_value } from "./host";
import { MapType } from "./enums";

export function addHeader(map: MapType, name: string, value: string): void {
  const key = String.UTF8.encode(name);
  const val = String.UTF8.encode(value);
  proxy_add_header_map_value(
    map,
    changetype<usize>(key),
    <usize>key.byteLength,
    changetype<usize>(val),
    <usize>val.byteLength,
  );
}
