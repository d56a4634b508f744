/*
 * The Node-API floor: the least a Node-API addon can do to return a mapping as a Buffer that
 * is unmapped when collected. `map(size, protection, flags, fd, offset)` reads its five
 * arguments as integers (no other checks), calls mmap(2), and hands the range to
 * napi_create_external_buffer with a finalizer that munmaps it. No registry, no fault
 * handling, no error codes: what node-mmap's `map` costs above this is node-mmap's own, and
 * what this costs above a peer that calls V8 and Node's C++ directly is Node-API's.
 *
 * `unmap(buffer)` is the least a Node-API addon can do to take a mapping away from JS at once:
 * it detaches the Buffer's ArrayBuffer (napi_detach_arraybuffer), and V8 then frees the memory,
 * which runs the munmap finalizer. (node-mmap's unmap() also puts a placeholder over the range
 * first, for native code that still holds the pointer; this one does not.) `map` + `unmap` here,
 * against the C floor's mmap + munmap, is what Node-API itself costs a pair.
 *
 * Compiled by the bench (cc -O2 -shared -fPIC) into bench/.build/napi-floor.node. The few
 * Node-API declarations it needs are written out below, so no Node headers are needed; the
 * symbols are resolved from the node binary when the addon loads.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
typedef void (*napi_finalize)(napi_env env, void *data, void *hint);

napi_status napi_get_cb_info(napi_env env, napi_callback_info info, size_t *argc,
                             napi_value *argv, napi_value *this_arg, void **data);
napi_status napi_get_value_int64(napi_env env, napi_value value, int64_t *result);
napi_status napi_create_external_buffer(napi_env env, size_t length, void *data,
                                        napi_finalize finalize_cb, void *finalize_hint,
                                        napi_value *result);
napi_status napi_get_typedarray_info(napi_env env, napi_value typedarray, int *type,
                                     size_t *length, void **data, napi_value *arraybuffer,
                                     size_t *byte_offset);
napi_status napi_detach_arraybuffer(napi_env env, napi_value arraybuffer);
napi_status napi_throw_error(napi_env env, const char *code, const char *msg);
napi_status napi_create_function(napi_env env, const char *name, size_t length,
                                 napi_callback cb, void *data, napi_value *result);
napi_status napi_set_named_property(napi_env env, napi_value object, const char *name,
                                    napi_value value);

static void unmap_range(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)hint);
}

static napi_value map(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {0};
  int64_t arg[5] = {0};
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0) return NULL;
  for (size_t i = 0; i < argc && i < 5; i++) {
    if (napi_get_value_int64(env, argv[i], &arg[i]) != 0) {
      napi_throw_error(env, NULL, "map: arguments must be numbers");
      return NULL;
    }
  }
  if (arg[0] <= 0) {
    napi_throw_error(env, NULL, "map: size must be positive");
    return NULL;
  }
  size_t size = (size_t)arg[0];
  void *addr = mmap(NULL, size, (int)arg[1], (int)arg[2], (int)arg[3], (off_t)arg[4]);
  if (addr == MAP_FAILED) {
    napi_throw_error(env, NULL, "map: mmap failed");
    return NULL;
  }
  napi_value buffer = NULL;
  if (napi_create_external_buffer(env, size, addr, unmap_range, (void *)size, &buffer) != 0) {
    munmap(addr, size);
    return NULL;
  }
  return buffer;
}

static napi_value unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {0};
  napi_value arraybuffer = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0) return NULL;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], NULL, NULL, NULL, &arraybuffer, NULL) != 0 ||
      napi_detach_arraybuffer(env, arraybuffer) != 0) {
    napi_throw_error(env, NULL, "unmap: expected a Buffer made by map");
  }
  return NULL;
}

napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn = NULL;
  if (napi_create_function(env, "map", 3, map, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "map", fn) != 0) return NULL;
  if (napi_create_function(env, "unmap", 5, unmap, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "unmap", fn) != 0) return NULL;
  return exports;
}
