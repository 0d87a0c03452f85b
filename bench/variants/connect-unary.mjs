// The service measured with plain connect-unary publishes (see ../peers-adapter.mjs).
import { createVariant } from '../peers-adapter.mjs';

export default createVariant('connect-unary');
