// The service measured with plain grpc-unary publishes (see ../peers-adapter.mjs).
import { createVariant } from '../peers-adapter.mjs';

export default createVariant('grpc-unary');
