export * from '@flux-ts/core';
