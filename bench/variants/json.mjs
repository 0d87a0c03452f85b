// The service measured with plain json publishes (see ../peers-adapter.mjs).
import { createVariant } from '../peers-adapter.mjs';

export default createVariant('json');
