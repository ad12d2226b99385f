/** The API's model ids: which path serves a variant (`POST /v1/inference/<id>`), also recorded in returned PNGs. */
export const MODEL_IDS = Object.freeze({ schnell: 'black-forest-labs/FLUX-1-schnell', dev: 'black-forest-labs/FLUX-1-dev' });
